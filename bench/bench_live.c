/* The live progress line, the --sample series, results by status name,
 * and the /proc readings of the daemon. */
#include "bench/bench_common.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LIVE_TICK_NS 250000000ull

struct bench_live {
    const bench_setup *su;
    const char *mode;
    bench_rec *recs;
    unsigned n;
    int pid;
    bool tty;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    unsigned nsamples;
    bench_sample samples[BENCH_MAX_SAMPLES];
    /* snapshots: now, the previous tick, the previous sample */
    bench_hist_snap cur, tick, samp, tmp;
};

uint64_t bench_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* One process's utime + stime in seconds, -1 when unreadable. */
static double proc_cpu_one(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    /* comm may hold spaces and parentheses: fields start after the last ')' */
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    unsigned long long ut = 0, st = 0;
    /* after ')': state(3) ppid pgrp session tty tpgid flags minflt cminflt
     * majflt cmajflt utime(14) stime(15) */
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* The process and its descendants (certforged's signer keeper and signer
 * process sign for it): its CPU is theirs too. */
double bench_proc_cpu_s(int pid)
{
    double cpu = proc_cpu_one(pid);
    if (cpu < 0)
        return -1;
    char path[96];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", pid, pid);
    FILE *f = fopen(path, "r");
    int child;
    while (f && fscanf(f, "%d", &child) == 1) {
        double c = bench_proc_cpu_s(child);
        if (c > 0)
            cpu += c;
    }
    if (f)
        fclose(f);
    return cpu;
}

uint64_t bench_proc_kib(int pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t fl = strlen(field);
    unsigned long long v = 0;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, field, fl) == 0) {
            v = strtoull(line + fl, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

void bench_result_error(bench_result *r, const char *name, uint64_t n)
{
    if (n == 0)
        return;
    for (unsigned i = 0; i < r->nerr; i++)
        if (strcmp(r->err[i].name, name) == 0) {
            r->err[i].n += n;
            return;
        }
    /* the last slot collects whatever does not fit */
    unsigned i = r->nerr < BENCH_MAX_ERRNAMES - 1 ? r->nerr++ : BENCH_MAX_ERRNAMES - 1;
    if (i == BENCH_MAX_ERRNAMES - 1) {
        name = "OTHER";
        r->nerr = BENCH_MAX_ERRNAMES;
    }
    snprintf(r->err[i].name, sizeof(r->err[i].name), "%s", name);
    r->err[i].n += n;
}

void bench_result_merge(bench_result *r, bench_rec *recs, unsigned n)
{
    bench_hist_snap *s = malloc(sizeof(*s));
    memset(&r->lat, 0, sizeof(r->lat));
    for (unsigned i = 0; s && i < n; i++) {
        bench_hist_snap_of(&recs[i].h, s);
        bench_hist_snap_add(&r->lat, s);
    }
    free(s);
    r->done = r->lat.n;
}

static void snap_all(bench_live *l, bench_hist_snap *out, uint64_t *errors)
{
    memset(out, 0, sizeof(*out));
    *errors = 0;
    for (unsigned i = 0; i < l->n; i++) {
        bench_hist_snap_of(&l->recs[i].h, &l->tmp);
        bench_hist_snap_add(out, &l->tmp);
        *errors += atomic_load_explicit(&l->recs[i].errors, memory_order_relaxed);
    }
}

static void *live_main(void *arg)
{
    bench_live *l = arg;
    uint64_t t0 = bench_ns(), tick_t = t0, samp_t = t0, errors = 0;
    uint64_t samp_ns = (uint64_t)(l->su->sample_s * 1e9);
    memset(&l->tick, 0, sizeof(l->tick));
    memset(&l->samp, 0, sizeof(l->samp));
    pthread_mutex_lock(&l->mu);
    while (!l->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)LIVE_TICK_NS;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&l->cv, &l->mu, &ts);
        if (l->stop)
            break;
        uint64_t now = bench_ns();
        snap_all(l, &l->cur, &errors);
        if (samp_ns && now - samp_t >= samp_ns && l->nsamples < BENCH_MAX_SAMPLES) {
            l->tmp = l->cur;
            bench_hist_snap_sub(&l->tmp, &l->samp);
            bench_sample *s = &l->samples[l->nsamples++];
            s->t = (double)(now - t0) / 1e9;
            s->rate = (double)l->tmp.n / ((double)(now - samp_t) / 1e9);
            s->p99_ms = (double)bench_hist_quantile(&l->tmp, 0.99) / 1e6;
            s->rss_kib = l->pid > 0 ? bench_proc_kib(l->pid, "VmRSS:") : 0;
            l->samp = l->cur;
            samp_t = now;
        }
        if (l->tty) {
            l->tmp = l->cur;
            bench_hist_snap_sub(&l->tmp, &l->tick);
            double dt = (double)(now - tick_t) / 1e9;
            fprintf(stderr, "\r\033[K%s: %6.1f s  %9llu done  %8.0f/s  p99 %7.2f ms  errors %llu",
                    l->mode, (double)(now - t0) / 1e9, (unsigned long long)l->cur.n,
                    dt > 0 ? (double)l->tmp.n / dt : 0.0,
                    (double)bench_hist_quantile(&l->tmp, 0.99) / 1e6, (unsigned long long)errors);
            fflush(stderr);
        }
        l->tick = l->cur;
        tick_t = now;
    }
    pthread_mutex_unlock(&l->mu);
    if (l->tty) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
    }
    return NULL;
}

bench_live *bench_live_start(const bench_setup *su, const char *mode, bench_rec *recs, unsigned n,
                             int pid)
{
    bool tty = su->live && isatty(2);
    if (!tty && su->sample_s <= 0)
        return NULL;
    bench_live *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->su = su;
    l->mode = mode;
    l->recs = recs;
    l->n = n;
    l->pid = pid;
    l->tty = tty;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    if (pthread_create(&l->th, NULL, live_main, l) != 0) {
        free(l);
        return NULL;
    }
    return l;
}

void bench_live_stop(bench_live *l, bench_result *r)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->mu);
    l->stop = true;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->th, NULL);
    if (r) {
        r->nsamples = l->nsamples;
        memcpy(r->samples, l->samples, l->nsamples * sizeof(l->samples[0]));
    }
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    free(l);
}
