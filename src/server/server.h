/*
 * server.h - pigeond's running state: the event loop, the listeners, the
 * open sessions, and the configuration and queue they share.
 *
 * main.c builds a struct server, server.c accepts connections and keeps the
 * list of sessions, session.c runs each one.
 */
#ifndef PIGEON_SERVER_H
#define PIGEON_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config/config.h"
#include "smtp/server.h"

struct event_base;
struct evconnlistener;
struct client_limits;
struct queue;
struct session;

struct server {
    struct event_base *base;
    struct config *cfg;
    struct queue *queue;
    struct smtp_server_settings smtp; /* the engine's settings, from cfg */

    struct evconnlistener **listeners;
    size_t nlisteners;

    struct session *sessions; /* all open sessions */
    unsigned nsessions;
    struct client_limits *clients; /* sessions and connection rate per address */
    uint64_t next_session_id;
    bool stopping;
};

/* server_listen - bind every listener of the configuration; -1 with err set */
int server_listen(struct server *srv, char *err, size_t errsize);

/* server_start - accept connections on the bound listeners */
void server_start(struct server *srv);

/* server_stop - close the listeners and every session (421) */
void server_stop(struct server *srv);

/* session_open - a new client connection, accepted on fd */
void session_open(struct server *srv, int fd, const struct sockaddr *addr, socklen_t addrlen);

/* session_close_all - end every session with 421 (shutdown) */
void session_close_all(struct server *srv);

#endif
