/* slidestream — pipeline files: which stages a run starts and how they are wired.
 *
 *   # comment
 *   name = demo
 *   set slide = ${rundir}/demo.tiff      variables; `slidestream run F key=value` overrides
 *   pre = synth slide --out ${slide}     one-shot commands run first, in order
 *   stage tiler = tiler --out @ipc://${rundir}/tiles ...
 *   stage cropper x2 = cell-cropper ...  two replicas (named cropper.0, cropper.1);
 *                                        x${n} takes the count from a variable
 *   sink count = count --in ipc://${rundir}/tiles ...
 *   post = detect ... --gallery ${rundir}/g.png  one-shot commands run after a successful run
 *
 * A run succeeds when every sink exits 0. ${rundir} is the run directory; ${name} the
 * pipeline's name. Commands are split on blanks; double quotes group words. The built-in
 * variables keys, trust and insecure (like rundir, settable without a `set`) give every stage
 * --keys, --trust and --insecure (docs/transport-security.md).
 */
#ifndef SLIDESTREAM_PIPELINE_H
#define SLIDESTREAM_PIPELINE_H

#define SS_PIPE_MAX_STAGES 32
#define SS_PIPE_MAX_VARS 64
#define SS_PIPE_MAX_PRE 16
#define SS_PIPE_MAX_ARGS 128

typedef struct {
    char name[64];
    int replicas;          /* 0 when given by a variable: see ss_pipeline_replicas */
    char replicas_var[64]; /* the variable's name */
    int sink;
    char *cmd; /* unexpanded command line */
    int line;
} ss_pipe_stage_t;

typedef struct {
    char path[1024];
    char name[64];
    int nvars;
    char *var_key[SS_PIPE_MAX_VARS];
    char *var_val[SS_PIPE_MAX_VARS];
    int npre;
    char *pre[SS_PIPE_MAX_PRE];
    int npost;
    char *post[SS_PIPE_MAX_PRE];
    int nstages;
    ss_pipe_stage_t stages[SS_PIPE_MAX_STAGES];
} ss_pipeline_t;

/* Parse a pipeline file and apply "key=value" overrides (each must name a declared variable
 * or `rundir`). Errors name the file and line. */
ss_pipeline_t *ss_pipeline_load(const char *path, int noverrides, char **overrides);
void ss_pipeline_destroy(ss_pipeline_t **p);

/* Set (or declare) a variable. */
int ss_pipeline_set(ss_pipeline_t *p, const char *key, const char *value);

/* Look up a variable (NULL when undeclared). */
const char *ss_pipeline_var(const ss_pipeline_t *p, const char *key);

/* Expand ${...} in `text` and split it into words: fills argv (malloc'd strings, caller frees
 * with ss_pipeline_free_words) and returns the count, or -1 with an error naming the
 * undefined variable or unbalanced quote. */
int ss_pipeline_words(const ss_pipeline_t *p, const char *text, char **argv, int max);
void ss_pipeline_free_words(char **argv, int n);

/* The replica count of a stage (expanding x${var}); -1 with an error when it is not 1..64. */
int ss_pipeline_replicas(const ss_pipeline_t *p, const ss_pipe_stage_t *s);

/* A run's transport security from the built-in variables `keys`, `trust` and `insecure` (each
 * optional; set in the file or as key=value): installs it for the launcher's own sockets
 * (ss_transport_set_security) and fills argv with the flags every stage gets: --keys DIR,
 * --trust PATH, --insecure (pointing into the struct). Errors name the bad key file or value. */
typedef struct {
    char keys[1024], trust[1024];
    char *argv[5];
    int argc;
} ss_pipeline_security_t;
int ss_pipeline_security(const ss_pipeline_t *p, ss_pipeline_security_t *rs);

#endif
