/* Diagnostics and progress meters on stderr (see include/slidestream/log.h). */
#include "slidestream/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static int log_quiet;

void ss_log_set_quiet(int quiet)
{
    log_quiet = quiet;
}

double ss_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void vlog(const char *tag, const char *fmt, va_list ap)
{
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    fprintf(stderr, "slidestream%s: %s\n", tag, msg);
}

void ss_info(const char *fmt, ...)
{
    if (log_quiet) return;
    va_list ap;
    va_start(ap, fmt);
    vlog("", fmt, ap);
    va_end(ap);
}

void ss_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(" warning", fmt, ap);
    va_end(ap);
}

struct ss_progress {
    char label[64];
    uint64_t total, done;
    double start, last_draw;
    int tty;
};

ss_progress_t *ss_progress_new(const char *label, uint64_t total)
{
    ss_progress_t *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    snprintf(p->label, sizeof p->label, "%s", label ? label : "items");
    p->total = total;
    p->start = p->last_draw = ss_now();
    p->tty = isatty(STDERR_FILENO);
    return p;
}

void ss_progress_set_total(ss_progress_t *p, uint64_t total)
{
    if (p) p->total = total;
}

static void draw(ss_progress_t *p, double now, int final)
{
    double el = now - p->start;
    double rate = el > 0 ? (double)p->done / el : 0;
    char eta[32] = "";
    if (p->total > p->done && rate > 0)
        snprintf(eta, sizeof eta, ", ETA %.0fs", (double)(p->total - p->done) / rate);
    char tot[32] = "";
    if (p->total) snprintf(tot, sizeof tot, "/%llu", (unsigned long long)p->total);
    if (p->tty)
        fprintf(stderr, "\r\033[K%s: %llu%s (%.1f/s%s, %.1fs)%s", p->label,
                (unsigned long long)p->done, tot, rate, eta, el, final ? "\n" : "");
    else if (!log_quiet)
        fprintf(stderr, "slidestream: %s: %llu%s (%.1f/s%s, %.1fs)\n", p->label,
                (unsigned long long)p->done, tot, rate, eta, el);
}

void ss_progress_add(ss_progress_t *p, uint64_t n)
{
    if (!p) return;
    p->done += n;
    double now = ss_now();
    double every = p->tty ? 0.1 : 5.0;
    if (now - p->last_draw >= every) {
        p->last_draw = now;
        draw(p, now, 0);
    }
}

void ss_progress_destroy(ss_progress_t **pp)
{
    if (!pp || !*pp) return;
    draw(*pp, ss_now(), 1);
    free(*pp);
    *pp = NULL;
}
