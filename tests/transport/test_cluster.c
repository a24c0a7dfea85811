/* transport.cluster — a pipeline placed on several nodes: ipc endpoints become tcp ones on the
 * head (one port per path, binds on every interface, connects to the head), bare ipc endpoints
 * are refused naming them, the placement rule (replicated connect-only stages on every node,
 * everything else on the head), the srun command of a worker, and the batch script that
 * `run --slurm` writes, run through `bash -n`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "slidestream/cluster.h"
#include "slidestream/error.h"
#include "slidestream/pipeline.h"

#include "../check.h"

/* Rewrite `in` and return the new word (static buffer), or NULL when refused. */
static const char *rewrite(ss_cluster_t *c, const char *in, int *rc)
{
    static char out[512];
    char *w = strdup(in);
    *rc = ss_cluster_rewrite(c, &w);
    snprintf(out, sizeof out, "%s", w);
    free(w);
    return *rc < 0 ? NULL : out;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    static char buf[16384];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void endpoints(void)
{
    ss_cluster_t *c = ss_cluster_new("node01", 20000);
    CHECK(c != NULL, "new: %s", ss_error_buffer());
    if (!c) return;
    int rc;
    const char *w = rewrite(c, "@ipc:///runs/r/tiles.ipc", &rc);
    CHECK(rc == 1 && w && !strcmp(w, "@tcp://0.0.0.0:20000"), "bind: %d %s", rc, w ? w : "");
    w = rewrite(c, ">ipc:///runs/r/tiles.ipc", &rc);
    CHECK(rc == 1 && w && !strcmp(w, ">tcp://node01:20000"), "connect, same path: %s", w ? w : "");
    w = rewrite(c, ">ipc:///runs/r/cells.ipc", &rc);
    CHECK(rc == 1 && w && !strcmp(w, ">tcp://node01:20001"), "next path, next port: %s",
          w ? w : "");
    w = rewrite(c, "--in", &rc);
    CHECK(rc == 0 && w && !strcmp(w, "--in"), "a flag is left alone");
    w = rewrite(c, ">tcp://elsewhere:5555", &rc);
    CHECK(rc == 0 && w && !strcmp(w, ">tcp://elsewhere:5555"), "tcp is left alone");
    ss_error_clear();
    w = rewrite(c, "ipc:///runs/r/bare.ipc", &rc);
    CHECK(rc == -1 && strstr(ss_error_buffer(), "ipc:///runs/r/bare.ipc") &&
              strstr(ss_error_buffer(), "no direction"),
          "bare ipc refused naming it: %s", ss_error_buffer());
    char ep[64];
    CHECK(!ss_cluster_endpoint(c, "status", 0, ep, sizeof ep) && !strcmp(ep, ">tcp://node01:20002"),
          "named channel: %s", ep);
    /* Ports run out after SS_CLUSTER_MAX_PORTS channels, with an error naming the one too many. */
    int i = 3, bad = 0;
    for (; i < SS_CLUSTER_MAX_PORTS + 2 && !bad; i++) {
        char key[32];
        snprintf(key, sizeof key, "ch%d", i);
        ss_error_clear();
        bad = ss_cluster_endpoint(c, key, 1, ep, sizeof ep) != 0;
    }
    CHECK(bad && i - 1 == SS_CLUSTER_MAX_PORTS && strstr(ss_error_buffer(), "one too many"),
          "ports used up at channel %d: %s", i - 1, ss_error_buffer());
    ss_cluster_destroy(&c);
    CHECK(c == NULL, "destroy clears");
    ss_error_clear();
    CHECK(ss_cluster_new("bad/host", 20000) == NULL && strstr(ss_error_buffer(), "bad/host"),
          "bad head refused");
    ss_error_clear();
    CHECK(ss_cluster_new("h", 80) == NULL && strstr(ss_error_buffer(), "port base 80"),
          "low port refused");
    ss_error_clear();
    CHECK(ss_cluster_port_base(0) == 10000 && ss_cluster_port_base(701) == 10032 &&
              ss_cluster_port_base(699) + SS_CLUSTER_MAX_PORTS <= 32768,
          "default port bases stay in 10000..32767");
}

static void placement_and_script(void)
{
    const char *conf = "name = t\nset n = 3\n"
                       "pre = synth slide --out ${rundir}/s.tiff\n"
                       "stage tiler = tiler --out @ipc://${rundir}/tiles.ipc\n"
                       "stage crop x2 = cell-cropper --in >ipc://${rundir}/tiles.ipc --out "
                       ">ipc://${rundir}/cells.ipc\n"
                       "stage binder x2 = bag-builder --in @ipc://${rundir}/cells.ipc\n"
                       "stage enc x${n} = encoder --in >ipc://${rundir}/cells.ipc\n"
                       "sink count = count --in @ipc://${rundir}/x.ipc\n";
    char path[64];
    snprintf(path, sizeof path, "test_cluster_%d.conf", (int)getpid());
    FILE *f = fopen(path, "w");
    fputs(conf, f);
    fclose(f);
    char *ov[] = {"n=4", "rundir=/shared/r", "note=it's"};
    ss_pipeline_t *p = ss_pipeline_load(path, 2, ov);
    CHECK(p != NULL, "load: %s", ss_error_buffer());
    if (!p) return;
    int want[] = {0, 1, 0, 1, 0}; /* tiler, crop, binder (binds), enc, count (sink) */
    for (int s = 0; s < p->nstages; s++) {
        char *w[32];
        int n = ss_pipeline_words(p, p->stages[s].cmd, w, 32);
        CHECK(n > 0 && ss_cluster_on_every_node(&p->stages[s], n, w) == want[s], "placement of %s",
              p->stages[s].name);
        ss_pipeline_free_words(w, n > 0 ? n : 0);
    }
    char script[64];
    snprintf(script, sizeof script, "test_cluster_%d.sh", (int)getpid());
    ss_slurm_job_t job = {.exe = "/opt/ss/slidestream",
                          .pipeline = "/home/u/p.conf",
                          .rundir = "/shared/r",
                          .workdir = "/home/u",
                          .noverrides = 3,
                          .overrides = ov,
                          .nodes = 3,
                          .sbatch = "--partition=cpu --time=1:00:00"};
    int rc = ss_cluster_write_script(p, &job, script);
    CHECK(rc == 0, "write script: %s", ss_error_buffer());
    const char *text = rc ? NULL : slurp(script);
    if (text) {
        const char *want_lines[] = {
            "#!/bin/bash\n",
            "#SBATCH --nodes=3\n",
            "#SBATCH --chdir=/home/u\n",
            "#SBATCH --output=/shared/r/slurm-%j.out\n",
            "#SBATCH --partition=cpu\n#SBATCH --time=1:00:00\n",
            "the pre steps, tiler, binder x2, count, and the post steps",
            "every node (3) runs crop x2, enc x4, each started by srun\n# (these counts are per "
            "node)",
            "exec '/opt/ss/slidestream' run '/home/u/p.conf' \\\n"
            "    'n=4' 'note=it'\\''s' \\\n"
            "    'rundir=/shared/r' --slurm-job\n",
        };
        for (size_t i = 0; i < sizeof want_lines / sizeof *want_lines; i++)
            CHECK(strstr(text, want_lines[i]) != NULL, "script lacks \"%s\":\n%s", want_lines[i],
                  text);
        CHECK(strstr(text, "rundir=/shared/r' 'rundir") == NULL, "rundir given twice");
        char cmd[128];
        snprintf(cmd, sizeof cmd, "bash -n %s", script);
        CHECK(system(cmd) == 0, "bash -n refuses the script");
    }
    job.exe = "relative/slidestream";
    ss_error_clear();
    CHECK(ss_cluster_write_script(p, &job, script) == -1 &&
              strstr(ss_error_buffer(), "relative/slidestream"),
          "a relative binary path is refused");
    ss_error_clear();
    unlink(script);
    unlink(path);
    ss_pipeline_destroy(&p);
}

static void srun_command(void)
{
    char *argv[16], buf[256];
    int n = ss_cluster_srun_argv("node07", "encoder.node07.1", argv, 16, buf, sizeof buf);
    CHECK(n > 2 && !strcmp(argv[0], "srun"), "srun argv: %d", n);
    int overlap = 0, node = 0, named = 0, one = 0;
    for (int i = 0; i < n; i++) {
        overlap |= !strcmp(argv[i], "--overlap");
        node |= !strcmp(argv[i], "--nodelist=node07");
        named |= !strcmp(argv[i], "--job-name=encoder.node07.1");
        one |= !strcmp(argv[i], "--ntasks=1");
    }
    CHECK(overlap && node && named && one,
          "srun argv lacks --overlap/--nodelist/--job-name/--ntasks");
    ss_error_clear();
    CHECK(ss_cluster_srun_argv("node07", "x", argv, 4, buf, sizeof buf) == -1, "max too small");
    ss_error_clear();
}

static void outside_slurm(void)
{
    unsetenv("SLURM_JOB_NODELIST");
    char **hosts = NULL;
    int n = 0;
    ss_error_clear();
    CHECK(ss_cluster_slurm_nodes(&hosts, &n) == -1 &&
              strstr(ss_error_buffer(), "not inside a Slurm"),
          "outside an allocation: %s", ss_error_buffer());
    ss_error_clear();
}

int main(void)
{
    endpoints();
    placement_and_script();
    srun_command();
    outside_slurm();
    return check_exit("cluster");
}
