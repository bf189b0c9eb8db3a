/* The floor: a server that answers every request with a fixed reply and
 * does nothing else, in one of the three protocols `tablecache bench`
 * speaks. It shows what the kernel's round trip and the generator cost,
 * with no server work at all: every other target's numbers sit above it.
 *
 *   gcc -O2 -o floor benches/floor.c
 *   ./floor 7000 line        # OP=..\n       -> OP=GET;IND=1;DATA=0;CODE=200\n
 *   ./floor 7001 resp        # *N\r\n + N bulk strings -> $1\r\n0\r\n
 *   ./floor 7002 memcache    # a line ending \r\n -> VALUE k 0 1\r\n0\r\nEND\r\n
 *
 * One thread, epoll, nonblocking sockets, a fixed buffer per connection.
 * Replies are answered as GETs (the floor stores nothing). Prints
 * "listening on 127.0.0.1:PORT" once ready. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXFD 4096
#define BUF 65536
static char in[MAXFD][BUF];
static size_t have[MAXFD];
static char out[BUF * 4];
static int proto; /* 0 line, 1 resp, 2 memcache */
static const char *reply[] = {"OP=GET;IND=1;DATA=0;CODE=200\n", "$1\r\n0\r\n", "VALUE k 0 1\r\n0\r\nEND\r\n"};

/* The length of the next whole request in b[0..n], or 0 if none yet. */
static size_t next_request(const char *b, size_t n) {
    const char *nl = memchr(b, '\n', n);
    if (!nl) return 0;
    if (proto != 1 || b[0] != '*') return (size_t)(nl - b) + 1;
    /* RESP: a count, then that many bulk strings of two lines each. */
    long parts = strtol(b + 1, NULL, 10);
    size_t at = (size_t)(nl - b) + 1;
    for (long k = 0; k < 2 * parts; k++) {
        nl = memchr(b + at, '\n', n - at);
        if (!nl) return 0;
        at = (size_t)(nl - b) + 1;
    }
    return at;
}

static void serve(int fd) {
    for (;;) {
        ssize_t r = read(fd, in[fd] + have[fd], BUF - have[fd]);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) { close(fd); have[fd] = 0; return; }
        if (r < 0 && errno == EINTR) continue;
        if (r > 0) have[fd] += (size_t)r;
        size_t at = 0, len, o = 0, rl = strlen(reply[proto]);
        while ((len = next_request(in[fd] + at, have[fd] - at)) > 0 && o + rl <= sizeof out) {
            memcpy(out + o, reply[proto], rl);
            o += rl;
            at += len;
        }
        memmove(in[fd], in[fd] + at, have[fd] - at);
        have[fd] -= at;
        for (size_t w = 0; w < o;) { /* a floor client reads its replies */
            ssize_t n = write(fd, out + w, o - w);
            if (n > 0) w += (size_t)n;
            else if (n < 0 && errno != EAGAIN && errno != EINTR) { close(fd); have[fd] = 0; return; }
        }
        if (r < 0) return; /* EAGAIN: drained */
    }
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: floor PORT line|resp|memcache\n"); return 2; }
    proto = !strcmp(argv[2], "resp") ? 1 : !strcmp(argv[2], "memcache") ? 2 : 0;
    int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1])), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 1024)) { perror("listen"); return 1; }
    socklen_t sl = sizeof a;
    getsockname(l, (struct sockaddr *)&a, &sl);
    printf("listening on 127.0.0.1:%d\n", ntohs(a.sin_port));
    fflush(stdout);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = l}, evs[256];
    epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd != l) { serve(fd); continue; }
            int c;
            while ((c = accept4(l, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                if (c >= MAXFD) { close(c); continue; }
                setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                have[c] = 0;
                struct epoll_event ce = {.events = EPOLLIN | EPOLLET, .data.fd = c};
                epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
            }
        }
    }
}
