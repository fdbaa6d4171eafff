/* srv_admin.c — the admin thread: REVOKE and CRL, which wait on the ledger (server_internal.h). */
#include "engine/server/server_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ admin thread */

void srv_adm_push(srv *s, srv_job *j)
{
    pthread_mutex_lock(&s->adm_mu);
    j->next = NULL;
    if (s->adm_tail)
        s->adm_tail->next = j;
    else
        s->adm_head = j;
    s->adm_tail = j;
    pthread_cond_signal(&s->adm_cv);
    pthread_mutex_unlock(&s->adm_mu);
}

static void adm_run(srv *s, srv_job *j)
{
    pipe_job *pj = &j->pj;
    pj->status = CF_ST_OK;
    pj->msg[0] = 0;
    if (j->op == PROTO_OP_REVOKE) {
        pj->status = s->rt.revoke(s->rt.admin_arg, &j->areq.revoke, j->peer_uid, &j->revoked_at,
                                  &j->reason, pj->msg, sizeof(pj->msg));
        return;
    }
    uint8_t *der = NULL;
    size_t len = 0;
    pj->status = s->rt.crl(s->rt.admin_arg, j->areq.crl.issuer, j->areq.crl.shard,
                           j->areq.crl.fresh, &der, &len, pj->msg, sizeof(pj->msg));
    if (pj->status != CF_ST_OK) {
        free(der);
        return;
    }
    /* the answer must fit in one frame (and the output buffer) */
    if (len + 64 > SRV_OUT_CAP || len + 64 > s->sv.max_frame) {
        snprintf(pj->msg, sizeof(pj->msg),
                 "the CRL (%zu octets) is larger than a frame: fetch it from the publish "
                 "folder (crl.dir), or give the issuer more crl_shards",
                 len);
        pj->status = CF_ST_POLICY_DENIED;
        free(der);
        return;
    }
    j->crl = der;
    j->crl_len = len;
}

static void *adm_main(void *arg)
{
    srv *s = arg;
    pthread_setname_np(pthread_self(), "cf-admin");
    for (;;) {
        pthread_mutex_lock(&s->adm_mu);
        while (!s->adm_head && !s->adm_stop)
            pthread_cond_wait(&s->adm_cv, &s->adm_mu);
        srv_job *j = s->adm_head;
        if (j) {
            s->adm_head = j->next;
            if (!s->adm_head)
                s->adm_tail = NULL;
        }
        pthread_mutex_unlock(&s->adm_mu);
        if (!j)
            break; /* stopping and nothing queued */
        adm_run(s, j);
        srv_pipe_done(&j->pj, s);
    }
    return NULL;
}

int srv_admin_start(srv *s)
{
    if (pthread_create(&s->adm_th, NULL, adm_main, s) != 0)
        return -1;
    s->adm_started = true;
    return 0;
}

/* What is still queued runs first and completes into the pool (like the
 * pipeline's). */
void srv_admin_stop(srv *s)
{
    if (!s->adm_started)
        return;
    pthread_mutex_lock(&s->adm_mu);
    s->adm_stop = true;
    pthread_cond_signal(&s->adm_cv);
    pthread_mutex_unlock(&s->adm_mu);
    pthread_join(s->adm_th, NULL);
    s->adm_started = false;
}
