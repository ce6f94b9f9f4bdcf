/*
 * tcp_crr.c - TCP connection setup rate: connect, 1-byte request, 1-byte response,
 * close, over and over, one connection at a time (what `netperf -t TCP_CRR` measures;
 * netperf is not in Debian main).  Client only: the server is the echo server of
 * ../shared/bench/tcp_rr.c (`tcp_rr -s BIND PORT`), which echoes until the client
 * closes and then closes its side.
 *
 *   tcp_crr HOST PORT SECONDS
 *
 * Prints one line:
 *   crr_per_s=<completed connections per second> p50_us=<> p99_us=<> n=<count> errors=<count>
 * A connection counts when connect, request and response all succeeded; the time of
 * one is from socket() to close().  Failures (refused, reset, 2 s timeout) are counted
 * in errors and the loop goes on; the client closes first (its TIME_WAIT stays on the
 * client, which the bench allows to be reused with net.ipv4.tcp_tw_reuse).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

/* one connection; 0 on success */
static int one(const struct sockaddr_in *sa)
{
	int one = 1, ok = -1;
	struct timeval tv = { .tv_sec = 2 };
	char b = 'x';
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (const void *)sa, sizeof(*sa)) == 0 && write(fd, &b, 1) == 1 && read(fd, &b, 1) == 1)
		ok = 0;
	close(fd);
	return ok;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s HOST PORT SECONDS\n", argv[0]);
		return 2;
	}
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
	if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) {
		fprintf(stderr, "bad address %s\n", argv[1]);
		return 2;
	}
	double secs = atof(argv[3]);
	size_t cap = 1 << 22, n = 0, errors = 0;
	float *lat = malloc(cap * sizeof(float));
	/* warm-up: a few connections, and fail fast when nothing listens */
	int warm = 0;
	for (int i = 0; i < 20; i++)
		warm += one(&sa) == 0;
	if (!warm) {
		fprintf(stderr, "connect to %s:%s fails: %s\n", argv[1], argv[2], strerror(errno));
		return 1;
	}
	double t0 = now(), end = t0 + secs, t = t0;
	while (t < end) {
		double a = t;
		int r = one(&sa);
		t = now();
		if (r) {
			errors++;
			if (errno == EADDRNOTAVAIL)
				usleep(1000);
			continue;
		}
		if (n < cap)
			lat[n] = (float)((t - a) * 1e6);
		n++;
	}
	double el = t - t0;
	size_t m = n < cap ? n : cap;
	if (m == 0) {
		printf("crr_per_s=0 p50_us=0 p99_us=0 n=0 errors=%zu\n", errors);
		return 1;
	}
	qsort(lat, m, sizeof(float), cmp);
	printf("crr_per_s=%.0f p50_us=%.2f p99_us=%.2f n=%zu errors=%zu\n", n / el, lat[m / 2],
	       lat[(size_t)(m * 0.99)], n, errors);
	return 0;
}
