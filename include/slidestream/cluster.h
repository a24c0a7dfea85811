/* slidestream — one pipeline file on several machines (a Slurm allocation): where each stage
 * runs, the tcp endpoints that stand in for its ipc:// ones, how a worker is started on another
 * node, and the batch script `slidestream run PIPELINE.conf --slurm` writes.
 *
 * Placement. A stage runs N times on every node when it is a scalable worker: declared with
 * replicas (`stage NAME xN = ...`, N given or from a variable), not a sink, and binding no
 * endpoint (no `@` word) — it only connects to the stable stages. Every other stage (sinks,
 * stages without replicas, anything that binds) runs on the first node, the head, as often as
 * it is declared. Pre steps run on the head before, post steps after.
 *
 * Endpoints. Each distinct ipc:// path of the run becomes one tcp port on the head, numbered
 * from port_base in order of first appearance: a bind `@ipc://PATH` becomes `@tcp://0.0.0.0:PORT`
 * and a connect `>ipc://PATH` becomes `>tcp://HEAD:PORT`. A bare `ipc://PATH` (bind or connect
 * by the stage's default) cannot be placed and is refused, naming it. Other words, tcp://
 * endpoints included, pass unchanged.
 *
 * Ownership: an ss_cluster_t owns its channel table; strings handed in are copied.
 */
#ifndef SLIDESTREAM_CLUSTER_H
#define SLIDESTREAM_CLUSTER_H

#include <stddef.h>

#include "slidestream/pipeline.h"

#define SS_CLUSTER_MAX_PORTS                                                                       \
    32 /* channels a run may use, launcher's status and shutdown included */

typedef struct ss_cluster ss_cluster_t;

/* head: the address the other nodes reach the head by (a host name or IP). port_base: the
 * first port, 1024..65535-SS_CLUSTER_MAX_PORTS. */
ss_cluster_t *ss_cluster_new(const char *head, int port_base);
void ss_cluster_destroy(ss_cluster_t **c);

/* The endpoint of channel `key` (any string; an ipc path, or "status"), its port assigned on
 * first use: "@tcp://0.0.0.0:PORT" to bind, ">tcp://HEAD:PORT" to connect. -1 when the ports are
 * used up or `out` is too small. */
int ss_cluster_endpoint(ss_cluster_t *c, const char *key, int bind, char *out, size_t n);

/* Rewrite one command word in place (*word is malloc'd and replaced when rewritten): returns 1
 * when it was an @ipc:// or >ipc:// endpoint, 0 when it is left as it is, -1 with an error
 * for a bare ipc:// endpoint or when the ports are used up. */
int ss_cluster_rewrite(ss_cluster_t *c, char **word);

/* 1 when stage `s`, whose expanded command is words[0..nwords-1], runs on every node; 0 when
 * it runs on the head. */
int ss_cluster_on_every_node(const ss_pipe_stage_t *s, int nwords, char *const *words);

/* The default first port of a Slurm job: 10000 + 32 * (job id mod 700), so that jobs that
 * share a head node (rarely) use different ports and no port is in the usual ephemeral range. */
int ss_cluster_port_base(unsigned long job_id);

/* The nodes of the Slurm allocation this process runs in (`scontrol show hostnames` of
 * SLURM_JOB_NODELIST), in Slurm's order: *hosts (malloc'd strings), *n. -1 with an error
 * outside an allocation or when scontrol fails. */
int ss_cluster_slurm_nodes(char ***hosts, int *n);
void ss_cluster_free_nodes(char ***hosts, int n);

/* The srun command that starts one task of a worker on `host`, as a step that shares the
 * job's CPUs with the other steps (--overlap) and is not pinned (--cpu-bind=none); the
 * worker's own argv follows it. Fills argv[0..] (pointing into `buf` or to literals) and
 * returns the count, -1 when max or bufsize is too small. */
int ss_cluster_srun_argv(const char *host, const char *name, char **argv, int max, char *buf,
                         size_t bufsize);

/* A batch job to write: `run --slurm`'s inputs. Paths must be absolute. */
typedef struct {
    const char *exe;      /* this slidestream binary */
    const char *pipeline; /* the pipeline file */
    const char *rundir;   /* the run directory (on a file system every node sees) */
    const char *workdir;  /* where relative paths in the overrides are resolved */
    int noverrides;       /* key=value, as given (rundir= among them is replaced) */
    char *const *overrides;
    int nodes;          /* nodes to ask for */
    const char *sbatch; /* more sbatch options, blank-separated; NULL for none */
    int port_base;      /* 0: ss_cluster_port_base of the job id */
    const char *head;   /* NULL: the head's Slurm node name */
    int nextra;         /* more flags for the launcher in the job (--keys DIR, ...) */
    char *const *extra;
} ss_slurm_job_t;

/* Write the batch script for `pl` (loaded with its overrides and rundir set) to `path`: the
 * #SBATCH lines, a comment with the placement of every stage, and the launcher command that
 * runs the pipeline inside the allocation (`slidestream run ... --slurm-job`). */
int ss_cluster_write_script(const ss_pipeline_t *pl, const ss_slurm_job_t *job, const char *path);

/* Submit a script with `sbatch --parsable`; fills job_id (Slurm's id) on success. Errors say
 * what sbatch printed. */
int ss_cluster_submit(const char *script, char *job_id, size_t n);

#endif
