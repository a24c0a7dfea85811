/* A pipeline on several machines (see include/slidestream/cluster.h): the placement rule, the
 * tcp channel table that replaces ipc:// paths, the srun command of a worker, the allocation's
 * node list and the batch script. Owns its channel table; nothing else. */
#include "slidestream/cluster.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "slidestream/error.h"

struct ss_cluster {
    char head[256];
    int port_base;
    int n;
    char *key[SS_CLUSTER_MAX_PORTS]; /* channel i is port_base + i */
};

ss_cluster_t *ss_cluster_new(const char *head, int port_base)
{
    if (!head || !*head || strlen(head) >= sizeof((ss_cluster_t *)0)->head ||
        strpbrk(head, " \t\n/:@>")) {
        ss_error("cluster", "head address '%s': want a host name or an IP address",
                 head ? head : "");
        return NULL;
    }
    if (port_base < 1024 || port_base > 65535 - SS_CLUSTER_MAX_PORTS) {
        ss_error("cluster", "port base %d: want 1024..%d", port_base, 65535 - SS_CLUSTER_MAX_PORTS);
        return NULL;
    }
    ss_cluster_t *c = calloc(1, sizeof *c);
    if (!c) {
        ss_error("cluster", "out of memory");
        return NULL;
    }
    snprintf(c->head, sizeof c->head, "%s", head);
    c->port_base = port_base;
    return c;
}

void ss_cluster_destroy(ss_cluster_t **cp)
{
    if (!cp || !*cp) return;
    for (int i = 0; i < (*cp)->n; i++)
        free((*cp)->key[i]);
    free(*cp);
    *cp = NULL;
}

int ss_cluster_endpoint(ss_cluster_t *c, const char *key, int bind, char *out, size_t n)
{
    int i = 0;
    while (i < c->n && strcmp(c->key[i], key))
        i++;
    if (i == c->n) {
        if (c->n == SS_CLUSTER_MAX_PORTS)
            return ss_error("cluster", "more than %d endpoints in one run ('%s' is one too many)",
                            SS_CLUSTER_MAX_PORTS, key);
        if (!(c->key[i] = strdup(key))) return ss_error("cluster", "out of memory");
        c->n++;
    }
    int w = bind ? snprintf(out, n, "@tcp://0.0.0.0:%d", c->port_base + i)
                 : snprintf(out, n, ">tcp://%s:%d", c->head, c->port_base + i);
    if (w < 0 || (size_t)w >= n) return ss_error("cluster", "endpoint of '%s' too long", key);
    return 0;
}

int ss_cluster_rewrite(ss_cluster_t *c, char **word)
{
    const char *w = *word;
    int bind = w[0] == '@', dir = bind || w[0] == '>';
    const char *ep = w + dir;
    if (strncmp(ep, "ipc://", 6)) return 0;
    if (!dir)
        return ss_error("cluster",
                        "endpoint '%s' has no direction: write @%s (bind) or >%s "
                        "(connect) so that it can be placed on the head node",
                        w, w, w);
    char out[320];
    if (ss_cluster_endpoint(c, ep + 6, bind, out, sizeof out)) return -1;
    char *nw = strdup(out);
    if (!nw) return ss_error("cluster", "out of memory");
    free(*word);
    *word = nw;
    return 1;
}

int ss_cluster_on_every_node(const ss_pipe_stage_t *s, int nwords, char *const *words)
{
    if (s->sink || s->replicas == 1) return 0;
    for (int i = 0; i < nwords; i++)
        if (words[i][0] == '@' && strstr(words[i], "://")) return 0;
    return 1;
}

int ss_cluster_port_base(unsigned long job_id)
{
    return 10000 + 32 * (int)(job_id % 700);
}

int ss_cluster_slurm_nodes(char ***hosts, int *n)
{
    *hosts = NULL;
    *n = 0;
    const char *list = getenv("SLURM_JOB_NODELIST");
    if (!list || !*list)
        return ss_error("cluster", "not inside a Slurm allocation (SLURM_JOB_NODELIST is not "
                                   "set): submit the script `run --slurm` writes, or use salloc");
    /* scontrol reads SLURM_JOB_NODELIST itself: nothing from the environment reaches a shell. */
    FILE *p = popen("scontrol show hostnames", "r");
    if (!p) return ss_error_system("cluster", "cannot run scontrol");
    char line[512];
    int cap = 0, err = 0;
    while (!err && fgets(line, sizeof line, p)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!*line) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            char **nh = realloc(*hosts, (size_t)cap * sizeof *nh);
            if (!nh) {
                err = ss_error("cluster", "out of memory");
                break;
            }
            *hosts = nh;
        }
        if (!((*hosts)[*n] = strdup(line)))
            err = ss_error("cluster", "out of memory");
        else
            (*n)++;
    }
    int st = pclose(p);
    if (!err && (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0))
        err =
            ss_error("cluster", "`scontrol show hostnames` failed for SLURM_JOB_NODELIST=%s", list);
    if (!err && *n == 0) err = ss_error("cluster", "SLURM_JOB_NODELIST=%s names no node", list);
    if (err) ss_cluster_free_nodes(hosts, *n), *n = 0;
    return err;
}

void ss_cluster_free_nodes(char ***hosts, int n)
{
    if (!hosts || !*hosts) return;
    for (int i = 0; i < n; i++)
        free((*hosts)[i]);
    free(*hosts);
    *hosts = NULL;
}

int ss_cluster_srun_argv(const char *host, const char *name, char **argv, int max, char *buf,
                         size_t bufsize)
{
    static char *fixed[] = {"srun",    "--overlap",       "--nodes=1",           "--ntasks=1",
                            "--quiet", "--cpu-bind=none", "--kill-on-bad-exit=1"};
    int nf = (int)(sizeof fixed / sizeof *fixed);
    if (max < nf + 2) return ss_error("cluster", "srun command: too many words");
    for (int i = 0; i < nf; i++)
        argv[i] = fixed[i];
    int a = snprintf(buf, bufsize, "--nodelist=%s", host);
    if (a < 0 || (size_t)a + 1 >= bufsize)
        return ss_error("cluster", "host name '%s' too long", host);
    int b = snprintf(buf + a + 1, bufsize - (size_t)a - 1, "--job-name=%s", name);
    if (b < 0 || (size_t)(a + 1 + b) >= bufsize)
        return ss_error("cluster", "worker name '%s' too long", name);
    argv[nf] = buf;
    argv[nf + 1] = buf + a + 1;
    return nf + 2;
}

/* ---- the batch script ------------------------------------------------------------------ */

/* One word for a POSIX shell, single-quoted. */
static void put_quoted(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'')
            fputs("'\\''", f);
        else
            fputc(*s, f);
    }
    fputc('\'', f);
}

/* The placement comment: which stages run on the head, which on every node. */
static int put_plan(FILE *f, const ss_pipeline_t *pl, int nodes)
{
    char head[1024] = "", every[1024] = "";
    size_t lh = 0, le = 0;
    for (int s = 0; s < pl->nstages; s++) {
        const ss_pipe_stage_t *stg = &pl->stages[s];
        int reps = ss_pipeline_replicas(pl, stg);
        char *words[SS_PIPE_MAX_ARGS];
        int n = reps < 0 ? -1 : ss_pipeline_words(pl, stg->cmd, words, SS_PIPE_MAX_ARGS);
        if (n < 0) return -1;
        int all = ss_cluster_on_every_node(stg, n, words);
        ss_pipeline_free_words(words, n);
        char item[96];
        if (reps > 1)
            snprintf(item, sizeof item, "%s x%d", stg->name, reps);
        else
            snprintf(item, sizeof item, "%s", stg->name);
        char *buf = all ? every : head;
        size_t *len = all ? &le : &lh;
        if (*len < sizeof head - sizeof item - 3)
            *len +=
                (size_t)snprintf(buf + *len, sizeof head - *len, "%s%s", *len ? ", " : "", item);
    }
    fprintf(f, "# Placement: the first node runs the pre steps, %s%s and the post steps;\n",
            head[0] ? head : "no stage", head[0] ? "," : "");
    if (every[0])
        fprintf(f, "# every node (%d) runs %s, each started by srun\n# (%s per node).\n", nodes,
                every, strchr(every, ',') ? "these counts are" : "this count is");
    else
        fprintf(f,
                "# no stage is a scalable worker (replicated, connecting only): all run there.\n");
    return 0;
}

int ss_cluster_write_script(const ss_pipeline_t *pl, const ss_slurm_job_t *job, const char *path)
{
    const char *abs[] = {job->exe, job->pipeline, job->rundir, job->workdir};
    for (int i = 0; i < 4; i++)
        if (!abs[i] || abs[i][0] != '/')
            return ss_error("cluster", "batch script: '%s' is not an absolute path",
                            abs[i] ? abs[i] : "(null)");
    if (job->nodes < 1) return ss_error("cluster", "batch script: %d nodes", job->nodes);
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return ss_error_system("cluster", "cannot write %s", tmp);
    time_t now = time(NULL);
    char stamp[64];
    strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", localtime(&now));
    fprintf(f, "#!/bin/bash\n");
    fprintf(f, "#SBATCH --job-name=ss-%s\n", pl->name);
    fprintf(f, "#SBATCH --nodes=%d\n", job->nodes);
    fprintf(f, "#SBATCH --exclusive\n");
    fprintf(f, "#SBATCH --chdir=%s\n", job->workdir);
    fprintf(f, "#SBATCH --output=%s/slurm-%%j.out\n", job->rundir);
    if (job->sbatch) {
        char opts[2048];
        snprintf(opts, sizeof opts, "%s", job->sbatch);
        for (char *save = NULL, *o = strtok_r(opts, " \t\n", &save); o;
             o = strtok_r(NULL, " \t\n", &save))
            fprintf(f, "#SBATCH %s\n", o);
    }
    fprintf(f,
            "#\n# slidestream: pipeline '%s' on %d Slurm node%s\n#   %s\n"
            "# written %s by `slidestream run ... --slurm`; submit it with\n"
            "#   sbatch %s\n",
            pl->name, job->nodes, job->nodes > 1 ? "s" : "", job->pipeline, stamp, path);
    if (put_plan(f, pl, job->nodes)) {
        fclose(f);
        remove(tmp);
        return -1;
    }
    fprintf(f,
            "# Endpoints: tcp on the first node, ports from %s.\n"
            "# Progress: %s/slurm-<job id>.out; logs: %s/logs/;\n"
            "# report: %s/report.json. This binary, the run directory and the pipeline's input\n"
            "# files must be on a file system every node sees.\n",
            job->port_base ? "--port-base" : "10000 + 32 x (job id mod 700)", job->rundir,
            job->rundir, job->rundir);
    fprintf(f, "exec ");
    put_quoted(f, job->exe);
    fprintf(f, " run ");
    put_quoted(f, job->pipeline);
    fputs(" \\\n   ", f);
    for (int i = 0; i < job->noverrides; i++) { /* the user's key=value words, as given */
        if (!strncmp(job->overrides[i], "rundir=", 7)) continue;
        fputc(' ', f);
        put_quoted(f, job->overrides[i]);
    }
    char rd[1100];
    snprintf(rd, sizeof rd, "rundir=%s", job->rundir);
    fputs(" \\\n    ", f);
    put_quoted(f, rd);
    fprintf(f, " --slurm-job");
    if (job->port_base) fprintf(f, " --port-base %d", job->port_base);
    if (job->head) {
        fprintf(f, " --head ");
        put_quoted(f, job->head);
    }
    for (int i = 0; i < job->nextra; i++) {
        fputc(' ', f);
        put_quoted(f, job->extra[i]);
    }
    fputc('\n', f);
    if (fclose(f)) {
        remove(tmp);
        return ss_error_system("cluster", "cannot write %s", tmp);
    }
    if (rename(tmp, path)) {
        remove(tmp);
        return ss_error_system("cluster", "cannot rename %s", tmp);
    }
    return 0;
}

int ss_cluster_submit(const char *script, char *job_id, size_t n)
{
    int fd[2];
    if (pipe(fd)) return ss_error_system("cluster", "pipe");
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]);
        close(fd[1]);
        return ss_error_system("cluster", "cannot start sbatch");
    }
    if (pid == 0) {
        dup2(fd[1], STDOUT_FILENO);
        dup2(fd[1], STDERR_FILENO);
        close(fd[0]);
        close(fd[1]);
        execlp("sbatch", "sbatch", "--parsable", script, (char *)NULL);
        fprintf(stderr, "cannot execute sbatch: %s\n", strerror(errno));
        _exit(127);
    }
    close(fd[1]);
    char out[2048];
    size_t len = 0;
    ssize_t r;
    while ((r = read(fd[0], out + len, sizeof out - 1 - len)) > 0 || (r < 0 && errno == EINTR))
        if (r > 0) len += (size_t)r;
    close(fd[0]);
    out[len] = '\0';
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    /* --parsable prints "ID" or "ID;cluster" on its last line. */
    char *last = out + len;
    while (last > out && (last[-1] == '\n' || last[-1] == ' '))
        *--last = '\0';
    char *line = strrchr(out, '\n') ? strrchr(out, '\n') + 1 : out;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || !*line)
        return ss_error("cluster", "sbatch %s failed: %s", script, *out ? out : "no output");
    line[strcspn(line, ";")] = '\0';
    if (strspn(line, "0123456789") != strlen(line))
        return ss_error("cluster", "sbatch %s: unexpected answer '%s'", script, out);
    snprintf(job_id, n, "%s", line);
    return 0;
}
