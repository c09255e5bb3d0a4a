/*
 * test_limits.c - per-address session and connection-rate limits
 * (src/policy/limits.c).  Time is passed in, so the tests move it by hand.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "policy/limits.h"

/* v4 - a sockaddr for an IPv4 address */
static struct sockaddr_in v4(const char *text)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    inet_pton(AF_INET, text, &a.sin_addr);
    return a;
}

/* v6 - a sockaddr for an IPv6 address */
static struct sockaddr_in6 v6(const char *text)
{
    struct sockaddr_in6 a;
    memset(&a, 0, sizeof(a));
    a.sin6_family = AF_INET6;
    inet_pton(AF_INET6, text, &a.sin6_addr);
    return a;
}

#define SA(x) ((const struct sockaddr *)&(x))

static void test_sessions_per_client_refuses_the_one_past_the_limit(void **state)
{
    (void)state;
    struct client_limits *l = client_limits_new(3, 0, 0);
    struct sockaddr_in a = v4("192.0.2.1"), b = v4("192.0.2.2");
    for (int i = 0; i < 3; i++)
        assert_int_equal(client_limits_connect(l, SA(a), 0), CLIENT_OK);
    assert_int_equal(client_limits_connect(l, SA(a), 0), CLIENT_TOO_MANY_SESSIONS);
    /* Another address is not affected. */
    assert_int_equal(client_limits_connect(l, SA(b), 0), CLIENT_OK);
    /* A session ends: one more is allowed. */
    client_limits_disconnect(l, SA(a));
    assert_int_equal(client_limits_connect(l, SA(a), 0), CLIENT_OK);
    assert_int_equal(client_limits_connect(l, SA(a), 0), CLIENT_TOO_MANY_SESSIONS);
    client_limits_free(l);
}

static void test_connection_rate_refills_over_a_minute(void **state)
{
    (void)state;
    struct client_limits *l = client_limits_new(0, 60, 0);
    struct sockaddr_in a = v4("198.51.100.7");
    for (int i = 0; i < 60; i++) {
        assert_int_equal(client_limits_connect(l, SA(a), 100.0), CLIENT_OK);
        client_limits_disconnect(l, SA(a));
    }
    assert_int_equal(client_limits_connect(l, SA(a), 100.0), CLIENT_TOO_FAST);
    /* 60 per minute: one more after a second, not before. */
    assert_int_equal(client_limits_connect(l, SA(a), 100.5), CLIENT_TOO_FAST);
    assert_int_equal(client_limits_connect(l, SA(a), 101.0), CLIENT_OK);
    client_limits_disconnect(l, SA(a));
    assert_int_equal(client_limits_connect(l, SA(a), 101.0), CLIENT_TOO_FAST);
    /* A full minute later the whole burst is back. */
    for (int i = 0; i < 60; i++) {
        assert_int_equal(client_limits_connect(l, SA(a), 200.0), CLIENT_OK);
        client_limits_disconnect(l, SA(a));
    }
    client_limits_free(l);
}

static void test_refused_connection_is_not_counted_as_a_session(void **state)
{
    (void)state;
    struct client_limits *l = client_limits_new(1, 0, 0);
    struct sockaddr_in a = v4("192.0.2.9");
    assert_int_equal(client_limits_connect(l, SA(a), 0), CLIENT_OK);
    assert_int_equal(client_limits_connect(l, SA(a), 0), CLIENT_TOO_MANY_SESSIONS);
    assert_int_equal(client_limits_connect(l, SA(a), 0), CLIENT_TOO_MANY_SESSIONS);
    client_limits_disconnect(l, SA(a));
    assert_int_equal(client_limits_connect(l, SA(a), 0), CLIENT_OK);
    client_limits_free(l);
}

static void test_ipv4_and_its_mapped_ipv6_form_are_one_client(void **state)
{
    (void)state;
    struct client_limits *l = client_limits_new(1, 0, 0);
    struct sockaddr_in a = v4("203.0.113.5");
    struct sockaddr_in6 m = v6("::ffff:203.0.113.5"), other = v6("2001:db8::5");
    assert_int_equal(client_limits_connect(l, SA(a), 0), CLIENT_OK);
    assert_int_equal(client_limits_connect(l, SA(m), 0), CLIENT_TOO_MANY_SESSIONS);
    assert_int_equal(client_limits_connect(l, SA(other), 0), CLIENT_OK);
    client_limits_free(l);
}

static void test_no_limits_means_everything_is_admitted(void **state)
{
    (void)state;
    struct client_limits *l = client_limits_new(0, 0, 0);
    struct sockaddr_in a = v4("192.0.2.1");
    for (int i = 0; i < 10000; i++)
        assert_int_equal(client_limits_connect(l, SA(a), 0), CLIENT_OK);
    client_limits_free(l);
}

static void test_idle_addresses_are_forgotten_so_the_table_stays_small(void **state)
{
    (void)state;
    struct client_limits *l = client_limits_new(10, 60, 0);
    char text[32];
    /* 5000 addresses connect once and leave; a minute later they are idle. */
    for (int i = 0; i < 5000; i++) {
        snprintf(text, sizeof(text), "10.%d.%d.1", i / 256, i % 256);
        struct sockaddr_in a = v4(text);
        assert_int_equal(client_limits_connect(l, SA(a), 0), CLIENT_OK);
        client_limits_disconnect(l, SA(a));
    }
    assert_int_equal(client_limits_tracked(l), 5000);
    /* A minute later, new addresses fill the table past half: the rebuild
     * keeps only the active ones. */
    for (int i = 0; i < 4000; i++) {
        snprintf(text, sizeof(text), "172.16.%d.%d", i / 256, i % 256);
        struct sockaddr_in a = v4(text);
        assert_int_equal(client_limits_connect(l, SA(a), 120.0), CLIENT_OK);
    }
    assert_int_equal(client_limits_tracked(l), 4000);
    client_limits_free(l);
}

static void test_table_full_of_active_clients_refuses_new_addresses(void **state)
{
    (void)state;
    struct client_limits *l = client_limits_new(10, 0, 0);
    char text[32];
    int refused = 0;
    for (int i = 0; i < CLIENT_LIMITS_MAX_ADDRESSES + 10; i++) {
        snprintf(text, sizeof(text), "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        struct sockaddr_in a = v4(text);
        if (client_limits_connect(l, SA(a), 0) == CLIENT_TOO_MANY_CLIENTS)
            refused++;
    }
    assert_true(refused >= 10);
    assert_true(client_limits_tracked(l) <= CLIENT_LIMITS_MAX_ADDRESSES);
    client_limits_free(l);
}

static void test_total_rate_is_shared_by_every_address_and_refills(void **state)
{
    (void)state;
    struct client_limits *l = client_limits_new(0, 0, 60);
    char text[32];
    /* 60 a minute from all addresses together: sixty different addresses
     * use the burst up, and the sixty-first is refused whoever it is. */
    for (int i = 0; i < 60; i++) {
        snprintf(text, sizeof(text), "203.0.113.%d", i + 1);
        struct sockaddr_in a = v4(text);
        assert_int_equal(client_limits_connect(l, SA(a), 50.0), CLIENT_OK);
        client_limits_disconnect(l, SA(a));
    }
    struct sockaddr_in fresh = v4("198.51.100.99");
    struct sockaddr_in6 fresh6 = v6("2001:db8::99");
    assert_int_equal(client_limits_connect(l, SA(fresh), 50.0), CLIENT_ALL_TOO_FAST);
    assert_int_equal(client_limits_connect(l, SA(fresh6), 50.0), CLIENT_ALL_TOO_FAST);
    /* One a second comes back, for whoever asks first. */
    assert_int_equal(client_limits_connect(l, SA(fresh), 50.5), CLIENT_ALL_TOO_FAST);
    assert_int_equal(client_limits_connect(l, SA(fresh6), 51.0), CLIENT_OK);
    assert_int_equal(client_limits_connect(l, SA(fresh), 51.0), CLIENT_ALL_TOO_FAST);
    client_limits_free(l);
}

static void test_refusal_by_one_limit_costs_no_token_of_the_others(void **state)
{
    (void)state;
    /* 2 sessions and 5 connections a minute per address; 6 a minute in all. */
    struct client_limits *l = client_limits_new(2, 5, 6);
    struct sockaddr_in a = v4("192.0.2.1"), b = v4("192.0.2.2");
    assert_int_equal(client_limits_connect(l, SA(a), 0), CLIENT_OK);
    assert_int_equal(client_limits_connect(l, SA(a), 0), CLIENT_OK);
    /* a's sessions are full: refused, and neither bucket pays for it. */
    for (int i = 0; i < 10; i++)
        assert_int_equal(client_limits_connect(l, SA(a), 0), CLIENT_TOO_MANY_SESSIONS);
    client_limits_disconnect(l, SA(a));
    client_limits_disconnect(l, SA(a));
    /* a has 3 of its 5 left; the total 4 of 6. */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(client_limits_connect(l, SA(a), 0), CLIENT_OK);
        client_limits_disconnect(l, SA(a));
    }
    assert_int_equal(client_limits_connect(l, SA(a), 0), CLIENT_TOO_FAST);
    /* a's refusals cost the total nothing: b gets the last one of the 6. */
    assert_int_equal(client_limits_connect(l, SA(b), 0), CLIENT_OK);
    assert_int_equal(client_limits_connect(l, SA(b), 0), CLIENT_ALL_TOO_FAST);
    /* ... and a refusal by the total costs b's own bucket nothing: ten
     * seconds later the total has one again, and b still has 4 of its own. */
    for (int i = 0; i < 10; i++)
        assert_int_equal(client_limits_connect(l, SA(b), 1.0), CLIENT_ALL_TOO_FAST);
    assert_int_equal(client_limits_connect(l, SA(b), 10.0), CLIENT_OK);
    client_limits_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sessions_per_client_refuses_the_one_past_the_limit),
        cmocka_unit_test(test_connection_rate_refills_over_a_minute),
        cmocka_unit_test(test_refused_connection_is_not_counted_as_a_session),
        cmocka_unit_test(test_ipv4_and_its_mapped_ipv6_form_are_one_client),
        cmocka_unit_test(test_no_limits_means_everything_is_admitted),
        cmocka_unit_test(test_idle_addresses_are_forgotten_so_the_table_stays_small),
        cmocka_unit_test(test_table_full_of_active_clients_refuses_new_addresses),
        cmocka_unit_test(test_total_rate_is_shared_by_every_address_and_refills),
        cmocka_unit_test(test_refusal_by_one_limit_costs_no_token_of_the_others),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
