/* run — the launcher: starts a pipeline's stages as child processes on this machine, wired by
 * ipc:// endpoints inside a run directory, shows live progress, and writes report.json.
 *   status in:  PULL @ipc://RUNDIR/status.ipc   (every stage pushes STATS here)
 *   shutdown:   PUB  @ipc://RUNDIR/shutdown.ipc (broadcast when the sinks are done)
 * A run succeeds when every sink exits 0. If any stage fails first, the launcher stops the
 * rest and exits 1 naming that stage and its log.
 * On Slurm (slidestream/cluster.h): --slurm writes a batch script that runs this launcher with
 * --slurm-job inside the allocation, where the ipc:// endpoints become tcp ones (CURVE, with a
 * key pair made for the run) on the first node and each scalable worker is a child `srun` on
 * every node. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "slidestream/args.h"
#include "slidestream/cluster.h"
#include "slidestream/log.h"
#include "slidestream/pipeline.h"
#include "slidestream/transport.h"

#define MAX_PROCS 256

typedef struct {
    char name[80];
    int sink;
    pid_t pid;
    int running, exited, status; /* status as from waitpid */
    double start, end;
    char log[1024];
    /* last status message */
    char state[32], unit[32], last_fault[512];
    unsigned long long in, out, errors, rejected, total;
} proc_t;

static volatile sig_atomic_t g_interrupted;
static void on_signal(int sig)
{
    g_interrupted = sig;
}

static int mkdirs(const char *path)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0777) && errno != EEXIST) return ss_error_system("run", "cannot create %s", buf);
        *p = '/';
    }
    if (mkdir(buf, 0777) && errno != EEXIST) return ss_error_system("run", "cannot create %s", buf);
    return 0;
}

static const char *self_exe(void)
{
    static char path[4096];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    if (n <= 0) return "slidestream";
    path[n] = '\0';
    return path;
}

/* fork + exec `slidestream argv...` (or, when argv[0] is not "slidestream", the program argv[0]
 * found in PATH: srun), output to `log` (NULL = inherit). */
static pid_t spawn(char **argv, const char *log)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        signal(SIGINT, SIG_IGN); /* the launcher decides how its children stop */
        if (log) {
            int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0666);
            if (fd >= 0) {
                dup2(fd, STDOUT_FILENO);
                dup2(fd, STDERR_FILENO);
                close(fd);
            }
        }
        int self = !strcmp(argv[0], "slidestream");
        if (self) execv(self_exe(), argv);
        else execvp(argv[0], argv);
        fprintf(stderr, "slidestream run: cannot execute %s: %s\n", self ? self_exe() : argv[0],
                strerror(errno));
        _exit(127);
    }
    return pid;
}

static void describe_status(int status, char *buf, size_t n)
{
    if (WIFEXITED(status)) snprintf(buf, n, "exit %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status)) snprintf(buf, n, "killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else snprintf(buf, n, "status %d", status);
}

static int ok_status(int status)
{
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static void print_log_tail(const char *log)
{
    FILE *f = fopen(log, "r");
    if (!f) return;
    char lines[6][512];
    int n = 0;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        snprintf(lines[n % 6], sizeof lines[0], "%s", line);
        n++;
    }
    fclose(f);
    int first = n > 6 ? n - 6 : 0;
    for (int i = first; i < n; i++) fprintf(stderr, "    | %s", lines[i % 6]);
}

static void update_from_status(proc_t *procs, int np, const ss_msg_t *m)
{
    char name[80] = "";
    if (ss_text_get(m->data, m->size, "stage", name, sizeof name)) return;
    for (int i = 0; i < np; i++) {
        if (strcmp(procs[i].name, name)) continue;
        char v[512];
        proc_t *p = &procs[i];
#define GETU(k, dst) if (!ss_text_get(m->data, m->size, k, v, sizeof v)) dst = strtoull(v, NULL, 10)
        GETU("in", p->in);
        GETU("out", p->out);
        GETU("errors", p->errors);
        GETU("rejected", p->rejected);
        GETU("total", p->total);
#undef GETU
        if (!ss_text_get(m->data, m->size, "state", v, sizeof v)) snprintf(p->state, sizeof p->state, "%.31s", v);
        if (!ss_text_get(m->data, m->size, "unit", v, sizeof v)) snprintf(p->unit, sizeof p->unit, "%.31s", v);
        ss_text_get(m->data, m->size, "last_fault", p->last_fault, sizeof p->last_fault);
        return;
    }
}

static void draw_progress(const char *run, proc_t *procs, int np, double start, int tty, int final)
{
    char line[2048];
    size_t len = 0;
    double el = ss_now() - start;
    len += (size_t)snprintf(line + len, sizeof line - len, "%s %.0fs", run, el);
    for (int i = 0; i < np && len < sizeof line - 128; i++) {
        proc_t *p = &procs[i];
        unsigned long long n = p->sink ? p->in : p->out;
        len += (size_t)snprintf(line + len, sizeof line - len, " | %s %llu%s%s", p->name, n,
                                p->unit[0] ? " " : "", p->unit);
        if (p->sink && el > 0) {
            double rate = (double)p->in / el;
            len += (size_t)snprintf(line + len, sizeof line - len, " %.1f/s", rate);
            if (p->total > p->in && rate > 0)
                len += (size_t)snprintf(line + len, sizeof line - len, " ETA %.0fs",
                                        (double)(p->total - p->in) / rate);
        }
        if (p->errors) len += (size_t)snprintf(line + len, sizeof line - len, " (%llu faults)", p->errors);
        if (p->exited) len += (size_t)snprintf(line + len, sizeof line - len, " [%s]", ok_status(p->status) ? "done" : "FAILED");
    }
    if (tty) fprintf(stderr, "\r\033[K%s%s", line, final ? "\n" : "");
    else fprintf(stderr, "slidestream run: %s\n", line);
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20) fprintf(f, "\\u%04x", *s);
        else fputc(*s, f);
    }
    fputc('"', f);
}

static int write_report(const char *rundir, const ss_pipeline_t *pl, proc_t *procs, int np,
                        const char *verdict, const char *failed, double wall)
{
    char path[1200], tmp[1300];
    snprintf(path, sizeof path, "%s/report.json", rundir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return ss_error_system("run", "cannot write %s", tmp);
    fprintf(f, "{\n  \"pipeline\": ");
    json_str(f, pl->path);
    fprintf(f, ",\n  \"name\": ");
    json_str(f, pl->name);
    fprintf(f, ",\n  \"rundir\": ");
    json_str(f, rundir);
    fprintf(f, ",\n  \"status\": ");
    json_str(f, verdict);
    fprintf(f, ",\n  \"failed_stage\": ");
    if (failed) json_str(f, failed);
    else fprintf(f, "null");
    fprintf(f, ",\n  \"wall_s\": %.3f,\n  \"stages\": [", wall);
    for (int i = 0; i < np; i++) {
        proc_t *p = &procs[i];
        fprintf(f, "%s\n    {\"name\": ", i ? "," : "");
        json_str(f, p->name);
        fprintf(f, ", \"sink\": %s, \"pid\": %d, ", p->sink ? "true" : "false", (int)p->pid);
        if (p->exited && WIFEXITED(p->status)) fprintf(f, "\"exit_code\": %d, \"signal\": null", WEXITSTATUS(p->status));
        else if (p->exited && WIFSIGNALED(p->status)) fprintf(f, "\"exit_code\": null, \"signal\": %d", WTERMSIG(p->status));
        else fprintf(f, "\"exit_code\": null, \"signal\": null");
        fprintf(f, ", \"wall_s\": %.3f, \"state\": ", (p->exited ? p->end : ss_now()) - p->start);
        json_str(f, p->state[0] ? p->state : "unknown");
        fprintf(f, ", \"unit\": ");
        json_str(f, p->unit);
        fprintf(f, ", \"in\": %llu, \"out\": %llu, \"errors\": %llu, \"rejected\": %llu, \"last_fault\": ",
                p->in, p->out, p->errors, p->rejected);
        json_str(f, p->last_fault);
        fprintf(f, ", \"log\": ");
        json_str(f, p->log);
        fprintf(f, "}");
    }
    fprintf(f, "\n  ]\n}\n");
    if (fclose(f)) return ss_error_system("run", "cannot write %s", tmp);
    if (rename(tmp, path)) return ss_error_system("run", "cannot rename %s", tmp);
    return 0;
}

/* Run one-shot commands (pre before the stages, post after a successful run) in order. */
static int run_steps(const ss_pipeline_t *pl, int count, char *const *steps, const char *what,
                     int quiet)
{
    for (int i = 0; i < count; i++) {
        char *words[SS_PIPE_MAX_ARGS + 2];
        int n = ss_pipeline_words(pl, steps[i], words + 1, SS_PIPE_MAX_ARGS);
        if (n < 0) return -1;
        if (n == 0) continue;
        words[0] = "slidestream";
        words[n + 1] = NULL;
        if (!quiet) {
            char line[2048];
            size_t len = 0;
            for (int k = 1; k <= n && len < sizeof line - 1; k++)
                len += (size_t)snprintf(line + len, sizeof line - len, "%s%s", k > 1 ? " " : "",
                                        words[k]);
            ss_info("run: %s: %s", what, line);
        }
        pid_t pid = spawn(words, NULL);
        int status = 0;
        while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        ss_pipeline_free_words(words + 1, n);
        if (pid < 0) return ss_error_system("run", "cannot start %s command '%s'", what, steps[i]);
        if (!ok_status(status)) {
            char d[128];
            describe_status(status, d, sizeof d);
            return ss_error("run", "%s command '%s' failed (%s)", what, steps[i], d);
        }
        if (g_interrupted) return ss_error("run", "interrupted");
    }
    return 0;
}

/* `path` made absolute against the working directory, into out. */
static int absolute(const char *path, char *out, size_t n)
{
    char cwd[2048];
    if (path[0] == '/') {
        if ((size_t)snprintf(out, n, "%s", path) >= n)
            return ss_error("run", "path too long: %s", path);
        return 0;
    }
    if (!getcwd(cwd, sizeof cwd))
        return ss_error_system("run", "cannot tell the working directory");
    if (!strcmp(path, ".")) path = "";
    if ((size_t)snprintf(out, n, "%s%s%s", cwd, *path ? "/" : "", path) >= n)
        return ss_error("run", "path too long: %s", path);
    return 0;
}

/* On Slurm the stages talk tcp across nodes: unless the run names its keys (keys=DIR) or asks
 * for plain tcp (insecure=1), it gets a CURVE key pair of its own in RUNDIR/keys, which every
 * stage and the launcher use (the run directory is on a file system every node sees). */
static int slurm_keys(ss_pipeline_t *pl, const char *rundir)
{
    const char *ins = ss_pipeline_var(pl, "insecure");
    if (ss_pipeline_var(pl, "keys") || (ins && !strcmp(ins, "1"))) return 0;
    char dir[1100], secret[1200];
    snprintf(dir, sizeof dir, "%s/keys", rundir);
    snprintf(secret, sizeof secret, "%s/key.secret", dir);
    if (access(secret, F_OK) && ss_keys_new(dir, 0, NULL)) return -1;
    return ss_pipeline_set(pl, "keys", dir);
}

/* --slurm: write RUNDIR/slurm.sh (and with --submit, sbatch it). */
static int slurm_script(const ss_pipeline_t *pl, const char *rundir, int noverrides,
                        char **overrides, const char *keys, int nodes, const char *sbatch,
                        int port_base, const char *head, int submit)
{
    char exe[4096], conf[4096], cwd[4096], script[1100], keys_ov[1100];
    if (absolute(self_exe(), exe, sizeof exe) || absolute(pl->path, conf, sizeof conf) ||
        absolute(".", cwd, sizeof cwd))
        return -1;
    /* The job gets the user's key=value words, plus the run's own keys when it made them. */
    char *ov[SS_PIPE_MAX_VARS + 2];
    int nov = 0, has_keys = 0;
    for (int i = 0; i < noverrides && nov < SS_PIPE_MAX_VARS; i++) {
        has_keys |= !strncmp(overrides[i], "keys=", 5);
        ov[nov++] = overrides[i];
    }
    if (keys && *keys && !has_keys) {
        snprintf(keys_ov, sizeof keys_ov, "keys=%s", keys);
        ov[nov++] = keys_ov;
    }
    ss_slurm_job_t job = {.exe = exe, .pipeline = conf, .rundir = rundir, .workdir = cwd,
                          .noverrides = nov, .overrides = ov, .nodes = nodes,
                          .sbatch = sbatch, .port_base = port_base, .head = head};
    snprintf(script, sizeof script, "%s/slurm.sh", rundir);
    if (ss_cluster_write_script(pl, &job, script)) return -1;
    printf("run %s: Slurm batch script %s (%d node%s)\n", pl->name, script, nodes,
           nodes > 1 ? "s" : "");
    if (!submit) {
        printf("submit it with: sbatch %s\n", script);
        return 0;
    }
    char id[64];
    if (ss_cluster_submit(script, id, sizeof id)) return -1;
    printf("submitted batch job %s; progress in %s/slurm-%s.out, report in %s/report.json\n", id,
           rundir, id, rundir);
    return 0;
}

/* --slurm-job: the allocation's nodes, the head's address and the tcp channel table. */
static ss_cluster_t *slurm_cluster(const char *head, int port_base, char ***hosts, int *nhosts)
{
    if (ss_cluster_slurm_nodes(hosts, nhosts)) return NULL;
    char here[256] = "";
    if (!head) head = getenv("SLURMD_NODENAME"); /* set on the node the batch script runs on */
    if (!head || !*head) {
        gethostname(here, sizeof here - 1); /* under salloc: the stable stages run here */
        head = here;
    }
    if (!port_base) {
        const char *id = getenv("SLURM_JOB_ID");
        port_base = ss_cluster_port_base(id ? strtoul(id, NULL, 10) : 0);
    }
    ss_cluster_t *cl = ss_cluster_new(head, port_base);
    if (cl) ss_info("run: Slurm job on %d node%s (%s%s); stable stages on %s, tcp ports from %d",
                    *nhosts, *nhosts > 1 ? "s" : "", (*hosts)[0], *nhosts > 1 ? ", ..." : "",
                    head, port_base);
    return cl;
}

int ss_main_run(int argc, char **argv)
{
    ss_stage_args_t sa = {0};
    double grace = 5.0;
    int slurm = 0, slurm_job = 0, submit = 0, nodes = 1, port_base = 0;
    const char *sbatch = NULL, *head = NULL;
    ss_arg_t args[] = {
        {"--grace", SS_ARG_DOUBLE, &grace, "S", "seconds stages get to stop after shutdown (default 5)", 0.1, 3600},
        {"--quiet", SS_ARG_FLAG, &sa.quiet, NULL, "no progress lines", 0, 0},
        {"--slurm", SS_ARG_FLAG, &slurm, NULL, "write a Slurm batch script RUNDIR/slurm.sh instead of running here", 0, 0},
        {"--nodes", SS_ARG_INT, &nodes, "N", "with --slurm: nodes to ask for (default 1)", 1, 100000},
        {"--submit", SS_ARG_FLAG, &submit, NULL, "with --slurm: submit the script with sbatch", 0, 0},
        {"--sbatch", SS_ARG_STRING, &sbatch, "OPTS", "with --slurm: more sbatch options (\"--partition=P --time=1:00:00\")", 0, 0},
        {"--slurm-job", SS_ARG_FLAG, &slurm_job, NULL, "inside a Slurm allocation (the script, or salloc): stable stages here, workers on every node by srun, tcp endpoints", 0, 0},
        {"--port-base", SS_ARG_INT, &port_base, "P", "on Slurm: the first tcp port (default 10000 + 32 x (job id mod 700))", 1024, 65535 - SS_CLUSTER_MAX_PORTS},
        {"--head", SS_ARG_STRING, &head, "ADDR", "on Slurm: the address other nodes reach the first node by (default its node name)", 0, 0},
        {0},
    };
    int npos = 0;
    char **pos = NULL;
    int rc = ss_args_parse(argc, argv,
                           "PIPELINE.conf [key=value ...] [options]\n\n"
                           "Starts every stage of a pipeline as a child process, wired by ipc://\n"
                           "endpoints in a run directory (override with rundir=DIR); writes\n"
                           "RUNDIR/report.json and each stage's log under RUNDIR/logs/.\n"
                           "With --slurm, writes a batch script that runs the same pipeline on a\n"
                           "Slurm allocation instead: stable stages on the first node, scalable\n"
                           "workers (replicated stages that only connect) N per node on every\n"
                           "node, tcp endpoints with CURVE in place of the ipc:// ones.",
                           args, &npos, &pos);
    if (rc) return rc > 0 ? 0 : (ss_error_report(NULL), 2);
    if (npos < 1) {
        free(pos);
        ss_error_report("run: which pipeline? (slidestream run PIPELINE.conf [key=value ...])");
        return 2;
    }
    if (slurm && slurm_job) {
        free(pos);
        ss_error_report("run: --slurm writes a script, --slurm-job runs inside one: not both");
        return 2;
    }
    ss_pipeline_t *pl = ss_pipeline_load(pos[0], npos - 1, pos + 1);
    if (!pl) {
        free(pos);
        ss_error_report(NULL);
        return 2;
    }
    /* Run directory: relative by default, because ipc:// paths are limited to ~100 bytes. */
    char rundir[512];
    const char *rd = ss_pipeline_var(pl, "rundir");
    if (rd) snprintf(rundir, sizeof rundir, "%s", rd);
    else {
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        char stamp[32];
        strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
        snprintf(rundir, sizeof rundir, "runs/%s-%s-%d", pl->name, stamp, (int)getpid());
    }
    if (slurm && rundir[0] != '/') { /* the job runs elsewhere: give it an absolute one */
        char abs[sizeof rundir];
        rd = NULL;
        if (absolute(rundir, abs, sizeof abs)) rundir[0] = '\0';
        else memcpy(rundir, abs, sizeof rundir);
    }
    char logdir[600];
    snprintf(logdir, sizeof logdir, "%s/logs", rundir);
    if (!rundir[0] || (!rd && ss_pipeline_set(pl, "rundir", rundir))) {
        free(pos);
        ss_error_report(NULL);
        ss_pipeline_destroy(&pl);
        return 1;
    }
    if (strlen(rundir) > 80 && !slurm && !slurm_job)
        ss_warn("run directory '%s' is long; ipc:// endpoints are limited to ~100 bytes", rundir);
    ss_pipeline_security_t rs; /* --keys/--trust/--insecure for every stage */
    if (((slurm || slurm_job) && (ss_rundir_prepare(rundir) || slurm_keys(pl, rundir))) ||
        ss_pipeline_security(pl, &rs) || ss_rundir_prepare(rundir) || mkdirs(logdir)) {
        free(pos);
        ss_error_report(NULL);
        ss_pipeline_destroy(&pl);
        return 1;
    }
    if (slurm) {
        int bad = slurm_script(pl, rundir, npos - 1, pos + 1, rs.keys, nodes, sbatch, port_base,
                               head, submit);
        free(pos);
        ss_pipeline_destroy(&pl);
        if (bad) ss_error_report(NULL);
        return bad ? 1 : 0;
    }
    free(pos);
    /* On Slurm the launcher's own channels are tcp too: stages on other nodes report here. */
    char **hosts = NULL;
    int nhosts = 0;
    ss_cluster_t *cl = slurm_job ? slurm_cluster(head, port_base, &hosts, &nhosts) : NULL;
    char status_ep[700], shutdown_ep[700], status_arg[700], shutdown_arg[700];
    snprintf(status_ep, sizeof status_ep, "ipc://%s/status.ipc", rundir);
    snprintf(shutdown_ep, sizeof shutdown_ep, "ipc://%s/shutdown.ipc", rundir);
    snprintf(status_arg, sizeof status_arg, "%s", status_ep);
    snprintf(shutdown_arg, sizeof shutdown_arg, "%s", shutdown_ep);
    if (cl && (ss_cluster_endpoint(cl, "status", 1, status_ep, sizeof status_ep) ||
               ss_cluster_endpoint(cl, "shutdown", 1, shutdown_ep, sizeof shutdown_ep) ||
               ss_cluster_endpoint(cl, "status", 0, status_arg, sizeof status_arg) ||
               ss_cluster_endpoint(cl, "shutdown", 0, shutdown_arg, sizeof shutdown_arg)))
        ss_cluster_destroy(&cl);
    ss_sock_t *status = !slurm_job || cl ? ss_sock_new(SS_PULL, status_ep, 1, 10000) : NULL;
    ss_sock_t *bcast = status ? ss_sock_new(SS_PUB, shutdown_ep, 1, 100) : NULL;
    if (!bcast) {
        ss_error_report(NULL);
        ss_sock_destroy(&status);
        ss_cluster_destroy(&cl);
        ss_cluster_free_nodes(&hosts, nhosts);
        ss_pipeline_destroy(&pl);
        return 1;
    }
    struct sigaction sig;
    memset(&sig, 0, sizeof sig);
    sig.sa_handler = on_signal;
    sigaction(SIGINT, &sig, NULL);
    sigaction(SIGTERM, &sig, NULL);

    int tty = isatty(STDERR_FILENO) && !sa.quiet;
    if (!sa.quiet) ss_info("run %s: run directory %s", pl->name, rundir);
    double start = ss_now();
    if (run_steps(pl, pl->npre, pl->pre, "pre", sa.quiet)) {
        ss_error_report(NULL);
        ss_sock_destroy(&bcast);
        ss_sock_destroy(&status);
        ss_cluster_destroy(&cl);
        ss_cluster_free_nodes(&hosts, nhosts);
        ss_pipeline_destroy(&pl);
        return 1;
    }

    static proc_t procs[MAX_PROCS];
    int np = 0, failed = -1;
    /* argv: [srun words] slidestream COMMAND... --status EP --shutdown EP --name NAME [keys] */
    enum { PRE = 16 };
    char *words[PRE + SS_PIPE_MAX_ARGS + 16];
    for (int s = 0; s < pl->nstages && failed < 0; s++) {
        ss_pipe_stage_t *stg = &pl->stages[s];
        int reps = ss_pipeline_replicas(pl, stg);
        int n = reps < 0 ? -1 : ss_pipeline_words(pl, stg->cmd, words + PRE, SS_PIPE_MAX_ARGS);
        if (n <= 0) {
            if (n == 0) ss_error("run", "%s:%d: empty command", pl->path, stg->line);
            failed = np;
            break;
        }
        for (int k = 0; cl && k < n && failed < 0; k++)
            if (ss_cluster_rewrite(cl, &words[PRE + k]) < 0) failed = np;
        /* On Slurm, scalable workers run `reps` times on every node; the rest here. */
        int every = cl && ss_cluster_on_every_node(stg, n, words + PRE);
        int nodes_here = every ? nhosts : 1;
        if (failed < 0 && np + reps * nodes_here > MAX_PROCS) {
            ss_error("run", "%s: more than %d stage processes", pl->path, MAX_PROCS);
            failed = np;
        }
        for (int i = 0; failed < 0 && i < reps * nodes_here; i++) {
            int r = i % reps;
            const char *host = every ? hosts[i / reps] : NULL;
            proc_t *p = &procs[np];
            memset(p, 0, sizeof *p);
            char name[sizeof p->name];
            if (every) snprintf(name, sizeof name, "%.40s.%.30s.%d", stg->name, host, r);
            else if (reps > 1 || stg->replicas == 0) snprintf(name, sizeof name, "%.70s.%d", stg->name, r);
            else snprintf(name, sizeof name, "%s", stg->name);
            memcpy(p->name, name, sizeof name);
            p->sink = stg->sink;
            snprintf(p->log, sizeof p->log, "%s/%s.log", logdir, name);
            char **argv0 = words + PRE - 1, srun_buf[512], *srun[PRE];
            words[PRE - 1] = "slidestream";
            if (every) { /* srun ... /path/to/slidestream COMMAND ... */
                int ns = ss_cluster_srun_argv(host, name, srun, PRE - 2, srun_buf, sizeof srun_buf);
                if (ns < 0) {
                    failed = np;
                    break;
                }
                words[PRE - 1] = (char *)self_exe();
                argv0 = words + PRE - 1 - ns;
                memcpy(argv0, srun, (size_t)ns * sizeof *srun);
            }
            int k = PRE + n;
            words[k++] = "--status";
            words[k++] = status_arg;
            words[k++] = "--shutdown";
            words[k++] = shutdown_arg;
            words[k++] = "--name";
            words[k++] = p->name;
            for (int a = 0; a < rs.argc; a++) words[k++] = rs.argv[a];
            words[k] = NULL;
            p->start = ss_now();
            p->pid = spawn(argv0, p->log);
            if (p->pid < 0) {
                ss_error_system("run", "cannot start stage %s", p->name);
                failed = np;
                break;
            }
            p->running = 1;
            np++;
        }
        ss_pipeline_free_words(words + PRE, n);
    }

    int stopping = failed >= 0, interrupted = 0;
    double stop_at = stopping ? ss_now() : 0, last_draw = 0;
    for (;;) {
        ss_msg_t m;
        char why[128];
        while (ss_sock_recv(status, &m, 0, why, sizeof why) == 1) {
            if (m.h.type == SS_MSG_STATS) update_from_status(procs, np, &m);
            ss_msg_release(&m);
        }
        int st;
        pid_t pid;
        while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
            for (int i = 0; i < np; i++) {
                if (procs[i].pid != pid) continue;
                procs[i].running = 0;
                procs[i].exited = 1;
                procs[i].status = st;
                procs[i].end = ss_now();
                if (!stopping && (!ok_status(st))) {
                    failed = i;
                    stopping = 1;
                    stop_at = ss_now();
                }
            }
        }
        int running = 0, sinks_running = 0;
        for (int i = 0; i < np; i++) {
            running += procs[i].running;
            sinks_running += procs[i].running && procs[i].sink;
        }
        if (!stopping && g_interrupted) {
            interrupted = 1;
            stopping = 1;
            stop_at = ss_now();
        }
        if (!stopping && sinks_running == 0) {
            stopping = 1;
            stop_at = ss_now();
        }
        if (stopping) {
            /* Broadcast shutdown (repeated: a slow joiner may miss the first), then escalate. */
            ss_msg_header_t h = ss_msg_header_init(SS_MSG_SHUTDOWN);
            static volatile int dont_block = 1;
            ss_sock_send(bcast, &h, NULL, &dont_block);
            double waited = ss_now() - stop_at;
            int sig_to_send = waited > grace + 2 ? SIGKILL : (waited > grace || failed >= 0 || interrupted ? SIGTERM : 0);
            for (int i = 0; i < np && sig_to_send; i++)
                if (procs[i].running) kill(procs[i].pid, sig_to_send);
            if (!running) break;
        }
        double now = ss_now();
        if (!sa.quiet && now - last_draw >= (tty ? 0.2 : 5.0)) {
            draw_progress(pl->name, procs, np, start, tty, 0);
            last_draw = now;
        }
        usleep(50 * 1000);
    }
    /* Late status messages (final counts) */
    {
        ss_msg_t m;
        char why[128];
        while (ss_sock_recv(status, &m, 20, why, sizeof why) == 1) {
            if (m.h.type == SS_MSG_STATS) update_from_status(procs, np, &m);
            ss_msg_release(&m);
        }
    }
    if (!sa.quiet) draw_progress(pl->name, procs, np, start, tty, 1);
    const char *verdict = "ok";
    int exit_code = 0;
    if (failed < 0 && !interrupted && run_steps(pl, pl->npost, pl->post, "post", sa.quiet)) {
        ss_error_report(NULL);
        verdict = "failed";
        exit_code = 1;
    }
    double wall = ss_now() - start;
    if (failed >= 0 || interrupted) {
        verdict = interrupted ? "interrupted" : "failed";
        exit_code = interrupted ? 130 : 1;
    }
    if (write_report(rundir, pl, procs, np, verdict, failed >= 0 && failed < np ? procs[failed].name : NULL, wall))
        ss_error_report(NULL);
    if (failed >= 0 && failed < np) {
        char d[128];
        describe_status(procs[failed].status, d, sizeof d);
        fprintf(stderr, "slidestream run: stage '%s' failed (%s); the other stages were stopped. Log: %s\n",
                procs[failed].name, d, procs[failed].log);
        print_log_tail(procs[failed].log);
    } else if (failed >= 0) {
        ss_error_report("run: a stage could not be started");
    } else if (interrupted) {
        fprintf(stderr, "slidestream run: interrupted; stages stopped\n");
    }
    printf("run %s: %s in %.1fs; report: %s/report.json\n", pl->name, verdict, wall, rundir);
    ss_sock_destroy(&bcast);
    ss_sock_destroy(&status);
    ss_cluster_destroy(&cl);
    ss_cluster_free_nodes(&hosts, nhosts);
    ss_pipeline_destroy(&pl);
    return exit_code;
}
