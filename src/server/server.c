/*
 * server.c - listening sockets and accepting connections.
 *
 * Each listener of the configuration becomes a socket bound before pigeond
 * gives up root, then an evconnlistener on the event loop.  An IPv6
 * listener is IPv6-only, so "listen on 127.0.0.1" and "listen on ::1" can
 * share a port.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "lib/log.h"
#include "server/server.h"

#define LISTEN_BACKLOG 4096

/* on_accept - a new connection */
static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *addr,
                      int addrlen, void *arg)
{
    struct server *srv = arg;
    (void)l;
    if (srv->stopping) {
        evutil_closesocket(fd);
        return;
    }
    session_open(srv, fd, addr, (socklen_t)addrlen);
}

/* on_accept_error - accept() failed (out of descriptors, say): log and go on */
static void on_accept_error(struct evconnlistener *l, void *arg)
{
    (void)l;
    (void)arg;
    log_warn("accept: %s", strerror(EVUTIL_SOCKET_ERROR()));
}

/* bind_one - a listening socket for one listener */
static int bind_one(const struct listener_config *lc, char *err, size_t errsize)
{
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, lc->address, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(lc->port);
        len = sizeof(*a4);
    } else if (inet_pton(AF_INET6, lc->address, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(lc->port);
        len = sizeof(*a6);
    } else {
        snprintf(err, errsize, "listen on %s: not a numeric address", lc->address);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errsize, "listen on %s port %u: %s", lc->address, lc->port, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
        snprintf(err, errsize, "listen on %s port %u: %s", lc->address, lc->port, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* server_listen - bind every listener of the configuration */
int server_listen(struct server *srv, char *err, size_t errsize)
{
    size_t n = 0;
    for (const struct listener_config *lc = srv->cfg->listeners; lc != NULL; lc = lc->next)
        n++;
    srv->listeners = calloc(n, sizeof(*srv->listeners));
    if (srv->listeners == NULL) {
        snprintf(err, errsize, "out of memory");
        return -1;
    }
    for (const struct listener_config *lc = srv->cfg->listeners; lc != NULL; lc = lc->next) {
        int fd = bind_one(lc, err, errsize);
        if (fd < 0)
            return -1;
        struct evconnlistener *l = evconnlistener_new(
            srv->base, on_accept, srv, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_DISABLED, -1, fd);
        if (l == NULL) {
            snprintf(err, errsize, "listen on %s port %u: cannot watch the socket", lc->address,
                     lc->port);
            close(fd);
            return -1;
        }
        evconnlistener_set_error_cb(l, on_accept_error);
        srv->listeners[srv->nlisteners++] = l;
        log_info("listening on %s port %u", lc->address, lc->port);
    }
    return 0;
}

/* server_start - accept connections on the bound listeners */
void server_start(struct server *srv)
{
    for (size_t i = 0; i < srv->nlisteners; i++)
        evconnlistener_enable(srv->listeners[i]);
}

/* server_stop - close the listeners and every session */
void server_stop(struct server *srv)
{
    srv->stopping = true;
    for (size_t i = 0; i < srv->nlisteners; i++)
        evconnlistener_free(srv->listeners[i]);
    free(srv->listeners);
    srv->listeners = NULL;
    srv->nlisteners = 0;
    session_close_all(srv);
}
