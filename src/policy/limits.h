/*
 * limits.h - how many sessions a client address may hold, and how often it
 * may connect (the job of Postfix's anvil).
 *
 * One table, owned by the event loop: per address, the sessions it has open
 * now and a token bucket for new connections (capacity and refill both
 * "connections per minute"), plus one more bucket shared by every address
 * ("connections per minute, total").  IPv4 addresses are kept as
 * IPv4-mapped IPv6, so one table serves both.  The table is bounded: when
 * it is full of active addresses, a new address is refused (421) rather
 * than tracked.
 *
 * Pure: the caller passes the time; nothing here reads a clock.
 */
#ifndef PIGEON_POLICY_LIMITS_H
#define PIGEON_POLICY_LIMITS_H

#include <stddef.h>
#include <sys/socket.h>

/* At most this many addresses are tracked at once. */
#define CLIENT_LIMITS_MAX_ADDRESSES 65536

enum client_verdict {
    CLIENT_OK,
    CLIENT_TOO_MANY_SESSIONS, /* sessions-per-client reached */
    CLIENT_TOO_FAST,          /* connections-per-minute used up */
    CLIENT_ALL_TOO_FAST,      /* connections-per-minute-total used up, by all addresses */
    CLIENT_TOO_MANY_CLIENTS,  /* the table is full of active addresses */
};

struct client_limits;

/* client_limits_new - a table; 0 for any limit means no such limit */
struct client_limits *client_limits_new(unsigned sessions_per_client,
                                        unsigned connections_per_minute,
                                        unsigned connections_per_minute_total);

/* client_limits_free - release the table */
void client_limits_free(struct client_limits *l);

/* client_limits_connect - a connection from addr at time now (seconds); on
 * CLIENT_OK the session is counted and client_limits_disconnect must follow.
 * A refused connection costs no token of either bucket. */
enum client_verdict client_limits_connect(struct client_limits *l, const struct sockaddr *addr,
                                          double now);

/* client_limits_disconnect - a counted session from addr has ended */
void client_limits_disconnect(struct client_limits *l, const struct sockaddr *addr);

/* client_limits_tracked - addresses in the table (for tests) */
size_t client_limits_tracked(const struct client_limits *l);

#endif
