/* cf_daemon.h — the certforged harness shared by the suites that run the
 * built daemon (tests/daemon, tests/ledger, tests/provider): a throwaway
 * SoftHSM token and CA, a config writer, certforged started and stopped by
 * PID, libcertforge clients and raw frames, the checks every daemon suite
 * makes on its logs. Built once as the library cf_daemon. Test code only. */
#ifndef CF_DAEMON_H
#define CF_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/x509.h>

#include "bench/csr_pool.h"
#include "cf_testutil.h"
#include "client/certforge.h"
#include "proto/proto.h"

extern char DH_TOKEN[16]; /* token label of the suite's SoftHSM token */
extern cf_softhsm H;
extern char CA_PEM[400], CLI[512], DAEMON[512], SOCK[100];
extern X509 *CA;
extern uint8_t *CA_DER;
extern int CA_DER_LEN;
extern csr_pool POOL;
extern int NLOGS;
extern char LOGS[32][400]; /* every daemon log, checked for the PIN at the end */

typedef struct conf_opts {
    const char *server; /* extra settings inside server = { ... } */
    const char *grants; /* whole grants list, or NULL: this uid, everything on "nf" */
    const char *pipeline;
    const char *socket; /* the daemon's socket, or NULL: SOCK */
    const char *ledger; /* the whole ledger section ("" for none), or NULL: SQLite in H.dir */
    bool shim;
    const char *extra_keys; /* more entries of keys = ( ... ), with a leading comma */
    const char *extra_profiles; /* more entries of profiles = ( ... ), with a leading comma */
    const char *issuers;        /* the whole issuers list, or NULL: "ca" on key "ca" with CA_PEM */
    const char *extra;      /* more top-level settings (e.g. a crl section) */
    const char *ledger_path; /* the SQLite ledger (default: H.dir/ledger.db) */
} conf_opts;

typedef struct dproc {
    pid_t pid;
    char log[400];
} dproc;

char *slurp(const char *path);
bool log_has(const char *log, const char *needle);
/* Whether needle shows up in the log within timeout_ms (a line the daemon
 * writes after the event the test saw, e.g. a close after its shutdown). */
bool log_wait(const char *log, const char *needle, unsigned timeout_ms);
/* How often needle occurs in the log. */
int log_count(const char *log, const char *needle);
/* VmRSS of a process in KiB, -1 if it cannot be read. */
long daemon_rss_kb(pid_t pid);
void write_conf(const char *path, const conf_opts *o);
int daemon_start_ex(dproc *d, const char *conf, const char *shim_latency_us, int *status);
int daemon_start(dproc *d, const char *conf, const char *shim_latency_us);
int daemon_stop(dproc *d, int sig, unsigned timeout_ms);
void daemon_stop_clean(dproc *d);
cf_client *client(void);
void fill_req(cf_issue_req *r, const csr_item *it, const char *profile);
int verify_cert(const uint8_t *der, size_t len);
const char *kv_get(const cf_response *r, const char *key, char *buf, size_t len);
long status_value(const char *key);
void wait_connections(long want);
int raw_connect(void);
int raw_send(int fd, const void *p, size_t n);
int raw_read_n(int fd, uint8_t *buf, size_t n, uint64_t deadline);
int raw_response(int fd, uint8_t *buf, size_t cap, proto_resp *out, unsigned timeout_ms);
bool raw_eof(int fd, unsigned timeout_ms);
size_t enc_issue(uint8_t *buf, size_t cap, uint64_t id, const csr_item *it, const char *profile);

/* The suite's last check: at least min_logs daemons ran (every
 * daemon_start of the suite left a log), each log is there and not empty,
 * and none holds the PIN. A log that was never written fails the check: it
 * cannot show that the PIN stayed out of it. */
void dh_assert_no_pin_in_logs(const char *pin, int min_logs);

/* Suite set-up: token `token` with user PIN `pin`, a CA key and a
 * self-signed CA certificate (CN ca_cn) made with the certforge CLI, a pool
 * of 64 P-256 CSRs; SIGPIPE ignored (a daemon that closes on a client must
 * not kill the test). Without SoftHSM2 the suite is skipped (returns 1
 * after cf_test_skip). dh_suite_clean frees all of it. */
int dh_suite_init(const char *token, const char *pin, const char *ca_cn);
int dh_suite_clean(void);

#endif
