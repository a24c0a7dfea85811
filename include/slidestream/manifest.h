/* slidestream — slide manifests: CSV with the header `slide_id,path,label` and optional
 * `split` and `mpp` columns, in any order. Relative paths are resolved against the manifest's
 * folder. Fields may be double-quoted (paths with commas or spaces). Every row is validated:
 * errors name the file, the line and the value. */
#ifndef SLIDESTREAM_MANIFEST_H
#define SLIDESTREAM_MANIFEST_H

#include <stddef.h>

typedef struct {
    char *slide_id;
    char *path;  /* resolved */
    int label;   /* >= 0, or -1 when the cell is empty (unknown) */
    char *split; /* "" when absent */
    double mpp;  /* 0 when absent */
} ss_manifest_row_t;

typedef struct {
    ss_manifest_row_t *rows;
    size_t n;
} ss_manifest_t;

ss_manifest_t *ss_manifest_load(const char *path);
/* A manifest from bare slide paths: slide_id = file name without its extension, label -1. */
ss_manifest_t *ss_manifest_from_paths(int n, char **paths);
void ss_manifest_destroy(ss_manifest_t **m);

/* Split one CSV line into at most `max` fields (in place; handles "quoted,fields" and ""
 * escapes). Returns the field count or -1 for an unterminated quote. */
int ss_csv_split(char *line, char **fields, int max);

#endif
