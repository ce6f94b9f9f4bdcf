//! A small `getopt_long(3)` work-alike (GNU semantics), so that the slirp4netns
//! command line parses exactly as the C program's: `--opt=value` and `--opt value`,
//! unique abbreviations of long options (`--conf`), clustered short options with
//! attached arguments (`-cr3`, `-m1500`), permutation of operands and options, `--`,
//! and glibc's error messages, word for word.

/// Whether an option takes an argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HasArg {
    No,
    Required,
}

/// A long option: `name` without the leading dashes, and the id it reports.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LongOpt<Id> {
    pub(crate) name: &'static str,
    pub(crate) has_arg: HasArg,
    pub(crate) id: Id,
}

/// A short option letter.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ShortOpt<Id> {
    pub(crate) letter: char,
    pub(crate) has_arg: HasArg,
    pub(crate) id: Id,
}

/// One parsed option, in command-line order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Parsed<Id> {
    pub(crate) id: Id,
    pub(crate) arg: Option<String>,
}

/// The result of parsing: options in order (stopping at the first error, as
/// getopt's callers usually do, with glibc's message for it) and the operands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Outcome<Id> {
    /// Options in order; the last item is the error if parsing stopped at one.
    pub(crate) options: Vec<Result<Parsed<Id>, String>>,
    pub(crate) operands: Vec<String>,
}

/// Parses `args` (without the program name) like `getopt_long(argc, argv, short,
/// long, NULL)`. Messages are prefixed with `prog` as glibc prefixes them with
/// `argv[0]`.
pub(crate) fn getopt_long<Id: Copy + PartialEq>(
    prog: &str,
    args: &[String],
    short: &[ShortOpt<Id>],
    long: &[LongOpt<Id>],
) -> Outcome<Id> {
    let mut options = Vec::new();
    let mut operands = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            operands.extend(args[i..].iter().cloned());
            break;
        }
        if let Some(body) = arg.strip_prefix("--") {
            let result = long_option(prog, body, args, &mut i, long);
            let failed = result.is_err();
            options.push(result);
            if failed {
                break;
            }
        } else if arg.len() > 1 && arg.starts_with('-') {
            let failed = short_cluster(prog, &arg[1..], args, &mut i, short, &mut options);
            if failed {
                break;
            }
        } else {
            operands.push(arg.clone());
        }
    }
    Outcome { options, operands }
}

fn long_option<Id: Copy + PartialEq>(
    prog: &str,
    body: &str,
    args: &[String],
    i: &mut usize,
    long: &[LongOpt<Id>],
) -> Result<Parsed<Id>, String> {
    let (name, inline) = match body.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (body, None),
    };
    let matches: Vec<&LongOpt<Id>> = long.iter().filter(|o| o.name.starts_with(name)).collect();
    let found = match long.iter().find(|o| o.name == name) {
        Some(exact) => exact,
        None => match matches.as_slice() {
            [] => return Err(format!("{prog}: unrecognized option '--{body}'")),
            [first, rest @ ..]
                if rest
                    .iter()
                    .all(|o| o.id == first.id && o.has_arg == first.has_arg) =>
            {
                *first
            }
            all => {
                let mut msg = format!("{prog}: option '--{body}' is ambiguous; possibilities:");
                for o in all {
                    msg.push_str(&format!(" '--{}'", o.name));
                }
                return Err(msg);
            }
        },
    };
    match (found.has_arg, inline) {
        (HasArg::No, None) => Ok(Parsed {
            id: found.id,
            arg: None,
        }),
        (HasArg::No, Some(_)) => Err(format!(
            "{prog}: option '--{}' doesn't allow an argument",
            found.name
        )),
        (HasArg::Required, Some(v)) => Ok(Parsed {
            id: found.id,
            arg: Some(v.to_owned()),
        }),
        (HasArg::Required, None) => match args.get(*i) {
            Some(v) => {
                *i += 1;
                Ok(Parsed {
                    id: found.id,
                    arg: Some(v.clone()),
                })
            }
            None => Err(format!(
                "{prog}: option '--{}' requires an argument",
                found.name
            )),
        },
    }
}

/// Parses one cluster of short options (`cr3` from `-cr3`); returns whether it failed.
fn short_cluster<Id: Copy>(
    prog: &str,
    cluster: &str,
    args: &[String],
    i: &mut usize,
    short: &[ShortOpt<Id>],
    out: &mut Vec<Result<Parsed<Id>, String>>,
) -> bool {
    for (pos, letter) in cluster.char_indices() {
        let Some(opt) = short.iter().find(|o| o.letter == letter) else {
            out.push(Err(format!("{prog}: invalid option -- '{letter}'")));
            return true;
        };
        match opt.has_arg {
            HasArg::No => out.push(Ok(Parsed {
                id: opt.id,
                arg: None,
            })),
            HasArg::Required => {
                let rest = &cluster[pos + letter.len_utf8()..];
                let arg = if !rest.is_empty() {
                    rest.to_owned()
                } else if let Some(next) = args.get(*i) {
                    *i += 1;
                    next.clone()
                } else {
                    out.push(Err(format!(
                        "{prog}: option requires an argument -- '{letter}'"
                    )));
                    return true;
                };
                out.push(Ok(Parsed {
                    id: opt.id,
                    arg: Some(arg),
                }));
                return false;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum O {
        Configure,
        Mtu,
        Ready,
        DisableHostLoopback,
        DisableDns,
        Outbound,
        Outbound6,
        Help,
    }

    const SHORT: &[ShortOpt<O>] = &[
        ShortOpt {
            letter: 'c',
            has_arg: HasArg::No,
            id: O::Configure,
        },
        ShortOpt {
            letter: 'm',
            has_arg: HasArg::Required,
            id: O::Mtu,
        },
        ShortOpt {
            letter: 'r',
            has_arg: HasArg::Required,
            id: O::Ready,
        },
        ShortOpt {
            letter: 'h',
            has_arg: HasArg::No,
            id: O::Help,
        },
    ];

    const LONG: &[LongOpt<O>] = &[
        LongOpt {
            name: "configure",
            has_arg: HasArg::No,
            id: O::Configure,
        },
        LongOpt {
            name: "mtu",
            has_arg: HasArg::Required,
            id: O::Mtu,
        },
        LongOpt {
            name: "ready-fd",
            has_arg: HasArg::Required,
            id: O::Ready,
        },
        LongOpt {
            name: "disable-host-loopback",
            has_arg: HasArg::No,
            id: O::DisableHostLoopback,
        },
        LongOpt {
            name: "no-host-loopback",
            has_arg: HasArg::No,
            id: O::DisableHostLoopback,
        },
        LongOpt {
            name: "disable-dns",
            has_arg: HasArg::No,
            id: O::DisableDns,
        },
        LongOpt {
            name: "outbound-addr",
            has_arg: HasArg::Required,
            id: O::Outbound,
        },
        LongOpt {
            name: "outbound-addr6",
            has_arg: HasArg::Required,
            id: O::Outbound6,
        },
        LongOpt {
            name: "help",
            has_arg: HasArg::No,
            id: O::Help,
        },
    ];

    fn parse(args: &[&str]) -> Outcome<O> {
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        getopt_long("slirp4netns", &args, SHORT, LONG)
    }

    fn ok(id: O, arg: Option<&str>) -> Result<Parsed<O>, String> {
        Ok(Parsed {
            id,
            arg: arg.map(str::to_owned),
        })
    }

    #[test]
    fn long_forms_with_equals_and_separate_values() {
        let out = parse(&[
            "--mtu=1500",
            "--mtu",
            "65520",
            "--configure",
            "1234",
            "tap0",
        ]);
        assert_eq!(
            out.options,
            vec![
                ok(O::Mtu, Some("1500")),
                ok(O::Mtu, Some("65520")),
                ok(O::Configure, None)
            ]
        );
        assert_eq!(out.operands, ["1234", "tap0"]);
    }

    #[test]
    fn separate_value_may_start_with_a_dash_and_may_be_empty() {
        let out = parse(&["--mtu", "-5", "-r", "", "--mtu="]);
        assert_eq!(
            out.options,
            vec![
                ok(O::Mtu, Some("-5")),
                ok(O::Ready, Some("")),
                ok(O::Mtu, Some(""))
            ]
        );
    }

    #[test]
    fn short_clusters_and_attached_arguments() {
        let out = parse(&["-cr3", "-m1500", "-c", "-m", "9000", "-ch"]);
        assert_eq!(
            out.options,
            vec![
                ok(O::Configure, None),
                ok(O::Ready, Some("3")),
                ok(O::Mtu, Some("1500")),
                ok(O::Configure, None),
                ok(O::Mtu, Some("9000")),
                ok(O::Configure, None),
                ok(O::Help, None),
            ]
        );
    }

    #[test]
    fn operands_are_permuted_and_double_dash_ends_options() {
        let out = parse(&["123", "-c", "tap0", "--", "-m", "--mtu=1"]);
        assert_eq!(out.options, vec![ok(O::Configure, None)]);
        assert_eq!(out.operands, ["123", "tap0", "-m", "--mtu=1"]);
        let out = parse(&["-", "-c"]);
        assert_eq!(out.operands, ["-"]);
    }

    #[test]
    fn unique_abbreviations_are_accepted() {
        let out = parse(&["--conf", "--no-host", "--he", "--outbound-addr=eth0"]);
        assert_eq!(
            out.options,
            vec![
                ok(O::Configure, None),
                ok(O::DisableHostLoopback, None),
                ok(O::Help, None),
                ok(O::Outbound, Some("eth0")),
            ]
        );
        // An exact match wins over a longer option with the same prefix.
        let out = parse(&["--outbound-addr", "x", "--outbound-addr6=y"]);
        assert_eq!(
            out.options,
            vec![ok(O::Outbound, Some("x")), ok(O::Outbound6, Some("y"))]
        );
    }

    #[test]
    fn glibc_error_messages() {
        let cases: &[(&[&str], &str)] = &[
            (&["--foo"], "slirp4netns: unrecognized option '--foo'"),
            (
                &["--foo=bar"],
                "slirp4netns: unrecognized option '--foo=bar'",
            ),
            (&["-x"], "slirp4netns: invalid option -- 'x'"),
            (&["-cx"], "slirp4netns: invalid option -- 'x'"),
            (&["-m"], "slirp4netns: option requires an argument -- 'm'"),
            (
                &["--mtu"],
                "slirp4netns: option '--mtu' requires an argument",
            ),
            (
                &["--mt"],
                "slirp4netns: option '--mtu' requires an argument",
            ),
            (
                &["--configure=yes"],
                "slirp4netns: option '--configure' doesn't allow an argument",
            ),
            (
                &["--conf=1"],
                "slirp4netns: option '--configure' doesn't allow an argument",
            ),
            (
                &["--disable"],
                "slirp4netns: option '--disable' is ambiguous; possibilities: \
                 '--disable-host-loopback' '--disable-dns'",
            ),
            (
                &["--outbound=1"],
                "slirp4netns: option '--outbound=1' is ambiguous; possibilities: \
                 '--outbound-addr' '--outbound-addr6'",
            ),
        ];
        for (args, message) in cases {
            let out = parse(args);
            assert_eq!(
                out.options.last(),
                Some(&Err((*message).to_owned())),
                "{args:?}"
            );
        }
    }

    #[test]
    fn parsing_stops_at_the_first_error() {
        let out = parse(&["-c", "--bogus", "--mtu=1"]);
        assert_eq!(out.options.len(), 2);
        assert!(out.options[1].is_err());
    }
}
