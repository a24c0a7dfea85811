/* slidestream — declarative command-line flags for stage and tool mains.
 *
 * A command lists its flags in a table; ss_args_parse fills the destinations, collects the
 * positional arguments, prints --help, and turns a bad flag or value into an error that
 * names it. Values are validated (numbers must parse completely and lie in range).
 */
#ifndef SLIDESTREAM_ARGS_H
#define SLIDESTREAM_ARGS_H

#include <stdint.h>

typedef enum {
    SS_ARG_END = 0,
    SS_ARG_FLAG,   /* int*: set to 1 */
    SS_ARG_STRING, /* const char **: points into argv */
    SS_ARG_INT,    /* int* within [min, max] */
    SS_ARG_I64,    /* int64_t* within [min, max] */
    SS_ARG_DOUBLE  /* double* within [min, max] */
} ss_arg_kind_t;

typedef struct {
    const char *name; /* "--tile" */
    ss_arg_kind_t kind;
    void *dst;
    const char *meta; /* "PX" shown in help */
    const char *help;
    double min, max; /* for numbers; both 0 = unbounded */
} ss_arg_t;

/* The flags every stage takes: where to send status, where shutdown comes from, its name,
 * and its transport security (ss_stage_open applies them all; see transport.h). */
typedef struct {
    const char *status;
    const char *shutdown;
    const char *name;
    int quiet;
    const char *keys;  /* --keys DIR: this stage's CURVE pair, DIR/key.pub + DIR/key.secret */
    const char *trust; /* --trust PATH: the peers' public keys, a .pub file or a directory */
    int insecure;      /* --insecure: allow a non-loopback tcp bind without keys */
} ss_stage_args_t;

#define SS_STAGE_ARGS(sa)                                                                     \
    {"--status", SS_ARG_STRING, &(sa).status, "EP", "push status to the launcher (connect)", 0, \
     0},                                                                                      \
        {"--shutdown", SS_ARG_STRING, &(sa).shutdown, "EP",                                   \
         "subscribe to the shutdown broadcast (connect)", 0, 0},                              \
        {"--name", SS_ARG_STRING, &(sa).name, "NAME", "name used in reports", 0, 0},          \
        {"--quiet", SS_ARG_FLAG, &(sa).quiet, NULL, "no progress lines", 0, 0},              \
        {"--keys", SS_ARG_STRING, &(sa).keys, "DIR",                                          \
         "CURVE key pair for tcp (DIR/key.pub, DIR/key.secret; `slidestream keys new DIR`)", 0, \
         0},                                                                                  \
        {"--trust", SS_ARG_STRING, &(sa).trust, "PATH",                                       \
         "peers' public keys: a .pub file or a directory of HOST.pub files", 0, 0},          \
        {"--insecure", SS_ARG_FLAG, &(sa).insecure, NULL,                                     \
         "allow a tcp bind on a non-loopback address without keys", 0, 0}

/* Parse argv[1..argc-1] (argv[0] is the command name). `usage` is the synopsis line(s) and
 * description printed by --help. Positionals are collected into *pos (pointers into argv,
 * malloc'd array; caller frees) when pos is not NULL; otherwise a positional is an error.
 * Returns 0 on success, 1 when --help was printed (exit 0), -1 on a usage error (in the
 * error buffer: exit 2). */
int ss_args_parse(int argc, char **argv, const char *usage, const ss_arg_t *args, int *npos,
                  char ***pos);

/* Require that a string flag was given; error names it. */
int ss_args_require(const char *cmd, const char *flag, const char *value);

#endif
