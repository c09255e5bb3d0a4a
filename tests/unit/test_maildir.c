/*
 * test_maildir.c - unit tests for src/deliver/maildir.c: delivery of a
 * queued content file into a Maildir.
 *
 * Each test gets a scratch directory under /tmp holding a spool message
 * directory (msg/, with the content file msg/<id>) and room for Maildirs.
 * Delivery on the same filesystem must be a hard link under a fixed name;
 * delivering again must find that name and add nothing; a Maildir that
 * cannot be made must defer with a reason.  The copy path is tested with
 * the content file on another filesystem (/dev/shm, a tmpfs here), and is
 * skipped where /dev/shm and /tmp turn out to be the same filesystem.
 * Every scratch directory is removed when its test ends.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "deliver/maildir.h"

#define TEST_ID   "0NDUQ6J8AMH200"
#define TEST_HOST "mail.example.org"
#define CONTENT   "Return-Path: <alice@example.net>\r\nSubject: hi\r\n\r\nHello, Bob.\r\n"
#define PATH_SIZE 4096

struct scratch {
    char dir[64];      /* /tmp/pigeon-test-maildir-XXXXXX */
    char shm[64];      /* /dev/shm/pigeon-test-maildir-XXXXXX, or "" */
    char msg_dir[128]; /* where the content file is */
    int msg_dirfd;
    struct envelope env;
};

/* ---- scratch directories ------------------------------------------------------------- */

/* remove_one - nftw callback: remove a file or an (emptied) directory */
static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* remove_tree - rm -rf dir; 0 if it is gone */
static int remove_tree(const char *dir)
{
    return nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* write_file - create path holding p[0..n) */
static void write_file(const char *path, const void *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, p, n), (ssize_t)n);
    close(fd);
}

/* put_content - write msg_dir/<id> and record its size in the envelope */
static void put_content(struct scratch *sc, const void *p, size_t n)
{
    char path[PATH_SIZE];
    snprintf(path, sizeof(path), "%s/%s", sc->msg_dir, sc->env.id);
    write_file(path, p, n);
    sc->env.size = n;
}

/* add_local_rcpt - a recipient delivered to the Maildir at maildir (the strings are copied) */
static void add_local_rcpt(struct scratch *sc, const char *address, const char *maildir)
{
    struct envelope_rcpt *r = envelope_add_rcpt(&sc->env);
    assert_non_null(r);
    r->address = strdup(address);
    r->route = ENVELOPE_ROUTE_MAILDIR;
    r->maildir = strdup(maildir);
    assert_non_null(r->address);
    assert_non_null(r->maildir);
}

/* open_msg_dir - set msg_dir and open it as msg_dirfd */
static void open_msg_dir(struct scratch *sc, const char *base)
{
    snprintf(sc->msg_dir, sizeof(sc->msg_dir), "%s/msg", base);
    assert_int_equal(mkdir(sc->msg_dir, 0700), 0);
    sc->msg_dirfd = open(sc->msg_dir, O_RDONLY | O_DIRECTORY);
    assert_true(sc->msg_dirfd >= 0);
}

/* scratch_setup - /tmp/…/msg/<id> holding CONTENT; an envelope with no recipients yet */
static int scratch_setup(void **state)
{
    struct scratch *sc = calloc(1, sizeof(*sc));
    assert_non_null(sc);
    snprintf(sc->dir, sizeof(sc->dir), "/tmp/pigeon-test-maildir-XXXXXX");
    assert_non_null(mkdtemp(sc->dir));
    open_msg_dir(sc, sc->dir);
    memcpy(sc->env.id, TEST_ID, QUEUE_ID_LEN + 1);
    sc->env.sender = strdup("alice@example.net");
    sc->env.client = strdup("[192.0.2.7]");
    sc->env.helo = strdup("mail.example.net");
    sc->env.arrival = 1795942550;
    put_content(sc, CONTENT, strlen(CONTENT));
    *state = sc;
    return 0;
}

/* scratch_teardown - remove everything the test made */
static int scratch_teardown(void **state)
{
    struct scratch *sc = *state;
    int r = 0;
    close(sc->msg_dirfd);
    envelope_free(&sc->env);
    if (remove_tree(sc->dir) < 0)
        r = -1;
    if (sc->shm[0] != '\0' && remove_tree(sc->shm) < 0)
        r = -1;
    free(sc);
    return r;
}

/* ---- looking at the result ------------------------------------------------------------ */

/* path_in - dir/rest into out */
static char *path_in(char *out, const char *dir, const char *rest)
{
    int n = snprintf(out, PATH_SIZE, "%s/%s", dir, rest);
    assert_true(n > 0 && n < PATH_SIZE);
    return out;
}

/* is_dir - does path name a directory? */
static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* count_entries - names in dir besides . and .. */
static size_t count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

/* delivered_path - maildir/new/<the fixed name for rcpt> */
static char *delivered_path(const struct scratch *sc, size_t rcpt, char *out)
{
    char name[512];
    maildir_file_name(&sc->env, rcpt, TEST_HOST, name, sizeof(name));
    int n = snprintf(out, PATH_SIZE, "%s/new/%s", sc->env.rcpt[rcpt].maildir, name);
    assert_true(n > 0 && n < PATH_SIZE);
    return out;
}

/* assert_same_bytes - the file at path holds exactly p[0..n) */
static void assert_same_bytes(const char *path, const void *p, size_t n)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    uint8_t *got = malloc(n + 1);
    assert_non_null(got);
    size_t have = 0;
    ssize_t r;
    while ((r = read(fd, got + have, n + 1 - have)) > 0)
        have += (size_t)r;
    close(fd);
    assert_int_equal(have, n);
    assert_memory_equal(got, p, n);
    free(got);
}

/* deliver - maildir_deliver() with the test host name */
/*
 * deliver - maildir_deliver() with the test host name, copies allowed;
 * *linked says whether this call hard-linked the content (its link count
 * went up), as opposed to copying it or finding it delivered already.
 */
static enum deliver_outcome deliver(struct scratch *sc, size_t rcpt, bool *linked, char *why,
                                    size_t whysize)
{
    struct stat before, after;
    why[0] = '\0';
    bool had = fstatat(sc->msg_dirfd, TEST_ID, &before, 0) == 0;
    enum deliver_outcome o =
        maildir_deliver(&sc->env, rcpt, sc->msg_dirfd, TEST_HOST, true, why, whysize);
    *linked =
        had && fstatat(sc->msg_dirfd, TEST_ID, &after, 0) == 0 && after.st_nlink > before.st_nlink;
    return o;
}

/* ---- file names ----------------------------------------------------------------------- */

static void test_file_name_is_arrival_queue_id_recipient_host_and_size(void **state)
{
    struct scratch *sc = *state;
    sc->env.size = 1234;
    char name[512];
    maildir_file_name(&sc->env, 0, TEST_HOST, name, sizeof(name));
    assert_string_equal(name, "1795942550.Q0NDUQ6J8AMH200R0.mail.example.org,S=1234");
    maildir_file_name(&sc->env, 17, TEST_HOST, name, sizeof(name));
    assert_string_equal(name, "1795942550.Q0NDUQ6J8AMH200R17.mail.example.org,S=1234");
}

static void test_slash_and_colon_in_the_host_name_are_escaped(void **state)
{
    struct scratch *sc = *state;
    sc->env.size = 7;
    char name[512];
    maildir_file_name(&sc->env, 2, "a/b:c//d::", name, sizeof(name));
    assert_string_equal(name,
                        "1795942550.Q0NDUQ6J8AMH200R2.a\\057b\\072c\\057\\057d\\072\\072,S=7");
    assert_null(strchr(name, '/'));
    assert_null(strchr(name, ':'));
}

/* ---- delivery on one filesystem -------------------------------------------------------- */

static void test_delivery_creates_tmp_new_and_cur_and_missing_parents(void **state)
{
    struct scratch *sc = *state;
    char maildir[PATH_SIZE], p[PATH_SIZE], why[256];
    path_in(maildir, sc->dir, "home/bob/Maildir");
    add_local_rcpt(sc, "bob@example.org", maildir);
    bool linked;
    assert_int_equal(deliver(sc, 0, &linked, why, sizeof(why)), DELIVER_OK);
    assert_true(is_dir(path_in(p, maildir, "tmp")));
    assert_true(is_dir(path_in(p, maildir, "new")));
    assert_true(is_dir(path_in(p, maildir, "cur")));
    assert_int_equal(count_entries(path_in(p, maildir, "tmp")), 0);
    assert_int_equal(count_entries(path_in(p, maildir, "cur")), 0);
    assert_int_equal(count_entries(path_in(p, maildir, "new")), 1);
}

static void test_delivery_links_the_content_file_into_new(void **state)
{
    struct scratch *sc = *state;
    char maildir[PATH_SIZE], p[PATH_SIZE], why[256];
    add_local_rcpt(sc, "bob@example.org", path_in(maildir, sc->dir, "Maildir"));
    bool linked = false;
    assert_int_equal(deliver(sc, 0, &linked, why, sizeof(why)), DELIVER_OK);
    assert_true(linked);

    struct stat content, mailbox;
    assert_int_equal(fstatat(sc->msg_dirfd, TEST_ID, &content, 0), 0);
    assert_int_equal(stat(delivered_path(sc, 0, p), &mailbox), 0);
    assert_true(content.st_dev == mailbox.st_dev);
    assert_true(content.st_ino == mailbox.st_ino);
    assert_int_equal(content.st_nlink, 2);
    assert_same_bytes(p, CONTENT, strlen(CONTENT));
    char expected[PATH_SIZE];
    int n = snprintf(expected, sizeof(expected),
                     "%s/new/1795942550.Q0NDUQ6J8AMH200R0.mail.example.org,S=%zu", maildir,
                     strlen(CONTENT));
    assert_true(n > 0 && n < PATH_SIZE);
    assert_string_equal(p, expected);
}

static void test_existing_maildir_is_used_as_it_is(void **state)
{
    struct scratch *sc = *state;
    char maildir[PATH_SIZE], p[PATH_SIZE], why[256];
    path_in(maildir, sc->dir, "Maildir");
    assert_int_equal(mkdir(maildir, 0700), 0);
    assert_int_equal(mkdir(path_in(p, maildir, "tmp"), 0700), 0);
    assert_int_equal(mkdir(path_in(p, maildir, "new"), 0700), 0);
    assert_int_equal(mkdir(path_in(p, maildir, "cur"), 0700), 0);
    write_file(path_in(p, maildir, "cur/1.old:2,S"), "old", 3);
    add_local_rcpt(sc, "bob@example.org", maildir);
    bool linked;
    assert_int_equal(deliver(sc, 0, &linked, why, sizeof(why)), DELIVER_OK);
    assert_true(linked);
    assert_int_equal(count_entries(path_in(p, maildir, "new")), 1);
    assert_int_equal(count_entries(path_in(p, maildir, "cur")), 1);
}

static void test_second_delivery_of_the_same_recipient_adds_no_second_file(void **state)
{
    struct scratch *sc = *state;
    char maildir[PATH_SIZE], p[PATH_SIZE], why[256];
    add_local_rcpt(sc, "bob@example.org", path_in(maildir, sc->dir, "Maildir"));
    bool linked;
    assert_int_equal(deliver(sc, 0, &linked, why, sizeof(why)), DELIVER_OK);
    assert_true(linked);
    /* As after a crash between the link and the queue's record of it. */
    assert_int_equal(deliver(sc, 0, &linked, why, sizeof(why)), DELIVER_OK);
    assert_false(linked);
    assert_int_equal(count_entries(path_in(p, maildir, "new")), 1);
    assert_int_equal(count_entries(path_in(p, maildir, "tmp")), 0);
    struct stat content;
    assert_int_equal(fstatat(sc->msg_dirfd, TEST_ID, &content, 0), 0);
    assert_int_equal(content.st_nlink, 2);
}

static void test_each_recipient_of_one_maildir_gets_its_own_file(void **state)
{
    struct scratch *sc = *state;
    char maildir[PATH_SIZE], p[PATH_SIZE], q[PATH_SIZE], why[256];
    path_in(maildir, sc->dir, "Maildir");
    add_local_rcpt(sc, "bob@example.org", maildir);
    add_local_rcpt(sc, "robert@example.org", maildir);
    bool linked;
    assert_int_equal(deliver(sc, 0, &linked, why, sizeof(why)), DELIVER_OK);
    assert_int_equal(deliver(sc, 1, &linked, why, sizeof(why)), DELIVER_OK);
    assert_int_equal(count_entries(path_in(p, maildir, "new")), 2);
    assert_string_not_equal(delivered_path(sc, 0, p), delivered_path(sc, 1, q));
    struct stat a, b;
    assert_int_equal(stat(p, &a), 0);
    assert_int_equal(stat(q, &b), 0);
    assert_true(a.st_ino == b.st_ino);
}

/* ---- deferrals and failures ------------------------------------------------------------ */

static void test_maildir_under_a_regular_file_defers_with_a_reason(void **state)
{
    struct scratch *sc = *state;
    char file[PATH_SIZE], maildir[PATH_SIZE], why[256];
    write_file(path_in(file, sc->dir, "home"), "not a directory", 15);
    add_local_rcpt(sc, "bob@example.org", path_in(maildir, sc->dir, "home/bob/Maildir"));
    bool linked;
    assert_int_equal(deliver(sc, 0, &linked, why, sizeof(why)), DELIVER_DEFER);
    assert_false(linked);
    assert_non_null(strstr(why, maildir));
    assert_non_null(strstr(why, strerror(ENOTDIR)));
}

static void test_maildir_that_is_a_regular_file_defers_with_a_reason(void **state)
{
    struct scratch *sc = *state;
    char maildir[PATH_SIZE], why[256];
    write_file(path_in(maildir, sc->dir, "Maildir"), "x", 1);
    add_local_rcpt(sc, "bob@example.org", maildir);
    bool linked;
    assert_int_equal(deliver(sc, 0, &linked, why, sizeof(why)), DELIVER_DEFER);
    assert_non_null(strstr(why, maildir));
    assert_non_null(strstr(why, strerror(ENOTDIR)));
}

static void test_unwritable_maildir_parent_defers_with_a_reason(void **state)
{
    struct scratch *sc = *state;
    if (geteuid() == 0)
        skip(); /* root writes anywhere; the regular-file tests above cover this path */
    char parent[PATH_SIZE], maildir[PATH_SIZE], why[256];
    assert_int_equal(mkdir(path_in(parent, sc->dir, "home"), 0500), 0);
    add_local_rcpt(sc, "bob@example.org", path_in(maildir, sc->dir, "home/Maildir"));
    bool linked;
    enum deliver_outcome r = deliver(sc, 0, &linked, why, sizeof(why));
    assert_int_equal(chmod(parent, 0700), 0);
    assert_int_equal(r, DELIVER_DEFER);
    assert_non_null(strstr(why, maildir));
    assert_non_null(strstr(why, strerror(EACCES)));
}

static void test_missing_content_file_defers_with_a_reason(void **state)
{
    struct scratch *sc = *state;
    char maildir[PATH_SIZE], p[PATH_SIZE], why[256];
    assert_int_equal(unlinkat(sc->msg_dirfd, TEST_ID, 0), 0);
    add_local_rcpt(sc, "bob@example.org", path_in(maildir, sc->dir, "Maildir"));
    bool linked;
    assert_int_equal(deliver(sc, 0, &linked, why, sizeof(why)), DELIVER_DEFER);
    assert_non_null(strstr(why, strerror(ENOENT)));
    assert_int_equal(count_entries(path_in(p, maildir, "new")), 0);
}

static void test_maildir_path_too_long_fails(void **state)
{
    struct scratch *sc = *state;
    char *maildir = malloc(PATH_SIZE + 1);
    assert_non_null(maildir);
    memset(maildir, 'm', PATH_SIZE);
    maildir[0] = '/';
    maildir[PATH_SIZE] = '\0';
    add_local_rcpt(sc, "bob@example.org", maildir);
    free(maildir);
    char why[256];
    bool linked;
    assert_int_equal(deliver(sc, 0, &linked, why, sizeof(why)), DELIVER_FAIL);
    assert_non_null(strstr(why, "too long"));
}

/* ---- delivery across filesystems -------------------------------------------------------- */

/* content_on_another_filesystem - move the spool's msg/ to /dev/shm; false if not possible */
static bool content_on_another_filesystem(struct scratch *sc)
{
    struct stat tmp, shm;
    if (stat(sc->dir, &tmp) < 0 || stat("/dev/shm", &shm) < 0 || tmp.st_dev == shm.st_dev)
        return false;
    snprintf(sc->shm, sizeof(sc->shm), "/dev/shm/pigeon-test-maildir-XXXXXX");
    if (mkdtemp(sc->shm) == NULL) {
        sc->shm[0] = '\0';
        return false;
    }
    close(sc->msg_dirfd);
    open_msg_dir(sc, sc->shm);
    return true;
}

/* assert_copied - maildir/new/<name> holds p[0..n) in a file of its own, and tmp/ is empty */
static void assert_copied(struct scratch *sc, size_t rcpt, const void *p, size_t n)
{
    char path[PATH_SIZE], tmp[PATH_SIZE];
    struct stat content, mailbox;
    assert_int_equal(fstatat(sc->msg_dirfd, TEST_ID, &content, 0), 0);
    assert_int_equal(stat(delivered_path(sc, rcpt, path), &mailbox), 0);
    assert_true(content.st_dev != mailbox.st_dev);
    assert_int_equal(content.st_nlink, 1);
    assert_int_equal(mailbox.st_nlink, 1);
    assert_true(S_ISREG(mailbox.st_mode));
    assert_same_bytes(path, p, n);
    assert_int_equal(count_entries(path_in(tmp, sc->env.rcpt[rcpt].maildir, "tmp")), 0);
}

static void test_content_on_another_filesystem_is_copied_not_linked(void **state)
{
    struct scratch *sc = *state;
    if (!content_on_another_filesystem(sc))
        skip();
    put_content(sc, CONTENT, strlen(CONTENT));
    char maildir[PATH_SIZE], p[PATH_SIZE], why[256];
    add_local_rcpt(sc, "bob@example.org", path_in(maildir, sc->dir, "Maildir"));
    bool linked = true;
    assert_int_equal(deliver(sc, 0, &linked, why, sizeof(why)), DELIVER_OK);
    assert_false(linked);
    assert_copied(sc, 0, CONTENT, strlen(CONTENT));

    /* Again: still one file, still the same bytes. */
    assert_int_equal(deliver(sc, 0, &linked, why, sizeof(why)), DELIVER_OK);
    assert_false(linked);
    assert_int_equal(count_entries(path_in(p, maildir, "new")), 1);
    assert_copied(sc, 0, CONTENT, strlen(CONTENT));
}

static void test_copy_is_left_to_the_workers_when_copies_are_not_allowed(void **state)
{
    struct scratch *sc = *state;
    if (!content_on_another_filesystem(sc))
        skip();
    put_content(sc, CONTENT, strlen(CONTENT));
    char maildir[PATH_SIZE], p[PATH_SIZE], why[256] = "";
    add_local_rcpt(sc, "bob@example.org", path_in(maildir, sc->dir, "Maildir"));
    /* The queue thread's fast path: a link or nothing. */
    assert_int_equal(
        maildir_deliver(&sc->env, 0, sc->msg_dirfd, TEST_HOST, false, why, sizeof(why)),
        DELIVER_NOT_TRIED);
    assert_int_equal(count_entries(path_in(p, maildir, "new")), 0);
}

static void test_large_binary_content_is_copied_byte_for_byte(void **state)
{
    struct scratch *sc = *state;
    if (!content_on_another_filesystem(sc))
        skip();
    size_t n = 3 * 65536 + 1234; /* more than one read/write or copy_file_range round */
    uint8_t *content = malloc(n);
    assert_non_null(content);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        content[i] = (uint8_t)x;
    }
    content[100] = '\0';
    content[101] = '\n';
    put_content(sc, content, n);
    char maildir[PATH_SIZE], why[256];
    add_local_rcpt(sc, "bob@example.org", path_in(maildir, sc->dir, "Maildir"));
    bool linked;
    assert_int_equal(deliver(sc, 0, &linked, why, sizeof(why)), DELIVER_OK);
    assert_false(linked);
    assert_copied(sc, 0, content, n);
    free(content);
}

static void test_content_shorter_than_its_envelope_says_defers_and_leaves_nothing(void **state)
{
    struct scratch *sc = *state;
    if (!content_on_another_filesystem(sc))
        skip();
    put_content(sc, CONTENT, strlen(CONTENT));
    sc->env.size = strlen(CONTENT) + 100;
    char maildir[PATH_SIZE], p[PATH_SIZE], why[256];
    add_local_rcpt(sc, "bob@example.org", path_in(maildir, sc->dir, "Maildir"));
    bool linked;
    assert_int_equal(deliver(sc, 0, &linked, why, sizeof(why)), DELIVER_DEFER);
    assert_non_null(strstr(why, maildir));
    assert_int_equal(count_entries(path_in(p, maildir, "new")), 0);
    assert_int_equal(count_entries(path_in(p, maildir, "tmp")), 0);
}

static void test_copy_left_in_tmp_by_a_crash_is_replaced(void **state)
{
    struct scratch *sc = *state;
    if (!content_on_another_filesystem(sc))
        skip();
    put_content(sc, CONTENT, strlen(CONTENT));
    char maildir[PATH_SIZE], p[PATH_SIZE], name[512], why[256];
    path_in(maildir, sc->dir, "Maildir");
    add_local_rcpt(sc, "bob@example.org", maildir);
    assert_int_equal(mkdir(maildir, 0700), 0);
    assert_int_equal(mkdir(path_in(p, maildir, "tmp"), 0700), 0);
    assert_int_equal(mkdir(path_in(p, maildir, "new"), 0700), 0);
    assert_int_equal(mkdir(path_in(p, maildir, "cur"), 0700), 0);
    maildir_file_name(&sc->env, 0, TEST_HOST, name, sizeof(name));
    int n = snprintf(p, sizeof(p), "%s/tmp/%s", maildir, name);
    assert_true(n > 0 && n < PATH_SIZE);
    write_file(p, "half a cop", 10);
    bool linked;
    assert_int_equal(deliver(sc, 0, &linked, why, sizeof(why)), DELIVER_OK);
    assert_copied(sc, 0, CONTENT, strlen(CONTENT));
}

/* Shorthand: every test gets a fresh scratch directory. */
#define SCRATCH_TEST(f) cmocka_unit_test_setup_teardown(f, scratch_setup, scratch_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        SCRATCH_TEST(test_file_name_is_arrival_queue_id_recipient_host_and_size),
        SCRATCH_TEST(test_slash_and_colon_in_the_host_name_are_escaped),
        SCRATCH_TEST(test_delivery_creates_tmp_new_and_cur_and_missing_parents),
        SCRATCH_TEST(test_delivery_links_the_content_file_into_new),
        SCRATCH_TEST(test_existing_maildir_is_used_as_it_is),
        SCRATCH_TEST(test_second_delivery_of_the_same_recipient_adds_no_second_file),
        SCRATCH_TEST(test_each_recipient_of_one_maildir_gets_its_own_file),
        SCRATCH_TEST(test_maildir_under_a_regular_file_defers_with_a_reason),
        SCRATCH_TEST(test_maildir_that_is_a_regular_file_defers_with_a_reason),
        SCRATCH_TEST(test_unwritable_maildir_parent_defers_with_a_reason),
        SCRATCH_TEST(test_missing_content_file_defers_with_a_reason),
        SCRATCH_TEST(test_maildir_path_too_long_fails),
        SCRATCH_TEST(test_content_on_another_filesystem_is_copied_not_linked),
        SCRATCH_TEST(test_copy_is_left_to_the_workers_when_copies_are_not_allowed),
        SCRATCH_TEST(test_large_binary_content_is_copied_byte_for_byte),
        SCRATCH_TEST(test_content_shorter_than_its_envelope_says_defers_and_leaves_nothing),
        SCRATCH_TEST(test_copy_left_in_tmp_by_a_crash_is_replaced),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
