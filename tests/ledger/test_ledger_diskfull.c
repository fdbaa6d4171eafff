/* certforged with its ledger on a full disk: a small tmpfs (mounted here;
 * the suite reports itself skipped, exit 77, where mounting is not allowed) filled up
 * with a file while clients keep issuing. Expect: requests fail with
 * LEDGER_FAILURE and carry no certificate; once the file is removed the
 * daemon issues again without a restart; every certificate a client
 * received is in the ledger with the same bytes. */
#include "cf_test.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/x509.h>

#include "cf_daemon.h"
#include "engine/ledger/ledger.h"

static char MNT[300], DB[400], FILLER[400];

static int suite_init(void)
{
    int rc = dh_suite_init("cf-full", "2468", "Full Test CA");
    if (rc != 0)
        return rc;
    snprintf(MNT, sizeof(MNT), "%s/full", H.dir);
    snprintf(DB, sizeof(DB), "%s/ledger.db", MNT);
    snprintf(FILLER, sizeof(FILLER), "%s/filler", MNT);
    if (mkdir(MNT, 0700) != 0) {
        dh_suite_clean();
        return cf_test_setup_failed("mkdir %s: %s", MNT, strerror(errno));
    }
    if (mount("tmpfs", MNT, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=0700") != 0) {
        cf_test_skip("cannot mount a tmpfs (%s): the disk-full case needs a small file system "
                     "of its own (root, or CAP_SYS_ADMIN)",
                     strerror(errno));
        dh_suite_clean();
        return 1;
    }
    return 0;
}

static int suite_clean(void)
{
    umount2(MNT, MNT_DETACH);
    return dh_suite_clean();
}

/* Fill the file system: write until ENOSPC. Returns the octets written. */
static size_t fill_up(void)
{
    int fd = open(FILLER, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return 0;
    static char block[4096];
    size_t n = 0;
    for (;;) {
        ssize_t w = write(fd, block, sizeof(block));
        if (w <= 0)
            break;
        n += (size_t)w;
    }
    close(fd);
    return n;
}

typedef struct got {
    char serial[41];
    uint8_t *der;
    size_t len;
} got;

static got GOT[4096];
static size_t NGOT;

/* One ISSUE; returns its status. An OK certificate is kept for the ledger
 * check; a failed answer must carry no certificate. */
static cf_status issue_one(cf_client *c, unsigned i)
{
    cf_issue_req req;
    fill_req(&req, &POOL.items[i % POOL.n], "nf");
    cf_response r;
    if (cf_issue_one(c, &req, 15000, &r) != 0)
        return CF_ST__MAX;
    if (r.status != CF_ST_OK) {
        CU_ASSERT_EQUAL(r.cert.len, 0);
        return r.status;
    }
    if (NGOT < sizeof(GOT) / sizeof(GOT[0])) {
        got *g = &GOT[NGOT++];
        cf_hex(r.serial.p, r.serial.len < 20 ? r.serial.len : 20, g->serial);
        g->der = malloc(r.cert.len);
        memcpy(g->der, r.cert.p, r.cert.len);
        g->len = r.cert.len;
    }
    return CF_ST_OK;
}

typedef struct cmp {
    const got *g;
    int same;
} cmp;

static int same_cb(const ledger_rec *r, void *arg)
{
    cmp *c = arg;
    c->same = r->cert_len == c->g->len && memcmp(r->cert, c->g->der, r->cert_len) == 0;
    return 0;
}

static void test_disk_full(void)
{
    dproc d;
    char conf[300];
    snprintf(conf, sizeof(conf), "%s/full.conf", H.dir);
    conf_opts o = {.ledger_path = DB};
    write_conf(conf, &o);
    CU_ASSERT_EQUAL_FATAL(daemon_start(&d, conf, NULL), 0);
    cf_client *c = client();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    unsigned i = 0, ok_before = 0;
    for (; i < 50; i++)
        ok_before += issue_one(c, i) == CF_ST_OK;
    CU_ASSERT_EQUAL(ok_before, 50);

    /* the disk fills: LEDGER_FAILURE, and nothing released */
    CU_ASSERT(fill_up() > 0);
    unsigned failed = 0, other = 0;
    for (unsigned k = 0; k < 3000 && failed < 20; k++, i++) {
        cf_status st = issue_one(c, i);
        if (st == CF_ST_LEDGER_FAILURE)
            failed++;
        else if (st != CF_ST_OK)
            other++;
    }
    CU_ASSERT_EQUAL(failed, 20);
    CU_ASSERT_EQUAL(other, 0);
    uint64_t end = cf_now_ms() + 5000;
    while (cf_now_ms() < end && !log_has(d.log, "event=ledger_failure"))
        cf_sleep_ms(20);
    CU_ASSERT(log_has(d.log, "event=ledger_failure"));
    CU_ASSERT(log_has(d.log, "SQLITE_FULL") || log_has(d.log, "disk") ||
              log_has(d.log, "sqlite code 13"));

    /* space again: issuing resumes without a restart */
    CU_ASSERT_EQUAL(unlink(FILLER), 0);
    unsigned ok_after = 0;
    for (unsigned k = 0; k < 100 && ok_after < 30; k++, i++) {
        cf_status st = issue_one(c, i);
        if (st == CF_ST_OK)
            ok_after++;
        else
            ok_after = 0; /* 30 in a row */
    }
    CU_ASSERT_EQUAL(ok_after, 30);
    end = cf_now_ms() + 5000;
    while (cf_now_ms() < end && !log_has(d.log, "event=ledger_recovered"))
        cf_sleep_ms(20);
    CU_ASSERT(log_has(d.log, "event=ledger_recovered"));
    cf_client_close(c);
    daemon_stop_clean(&d);

    /* every certificate a client received is in the ledger, same bytes */
    ledger_opts lo = {.backend = LEDGER_SQLITE, .path = DB, .read_only = true};
    ledger *l = NULL;
    char err[512];
    CU_ASSERT_EQUAL_FATAL(ledger_open(&lo, &l, err, sizeof(err)), 0);
    size_t present = 0;
    for (size_t k = 0; k < NGOT; k++) {
        cmp cm = {&GOT[k], 0};
        if (ledger_find(l, GOT[k].serial, same_cb, &cm, err, sizeof(err)) == 1 && cm.same)
            present++;
        CU_ASSERT_EQUAL(verify_cert(GOT[k].der, GOT[k].len), 0);
        free(GOT[k].der);
    }
    CU_ASSERT_EQUAL(present, NGOT);
    ledger_close(l);
}

int main(int argc, char **argv)
{
    static const cf_test tests[] = {
        {"disk full: LEDGER_FAILURE, nothing released, recovers", test_disk_full},
    };
    static const cf_suite suites[] = {
        CF_SUITE("certforged ledger on a full disk", suite_init, suite_clean, tests),
    };
    return CF_TEST_MAIN(argc, argv, suites);
}
