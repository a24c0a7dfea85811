/* Labelled cell-image folders: DIR/<CODE>/<image>, one folder per class code.
 *
 * The set is sorted by (class, file name) so that everything built from it — shuffles, bags —
 * depends only on the folder contents, never on the order readdir happens to return.
 * The set owns every string it holds.
 */
#include <ctype.h>
#include <limits.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "slidestream/bag.h"
#include "slidestream/error.h"
#include "slidestream/cells.h"

static int is_image(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name) return 0;
    static const char *const ext[] = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"};
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++)
        if (!strcasecmp(dot, ext[i])) return 1;
    return 0;
}

static int is_dir(const char *path)
{
    struct stat st;
    return !stat(path, &st) && S_ISDIR(st.st_mode);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_cell(const void *a, const void *b)
{
    const ss_cell_image_t *x = a, *y = b;
    int c = strcmp(x->cls, y->cls);
    return c ? c : strcmp(x->cell_id, y->cell_id);
}

/* Sorted names in dir for which keep(dir/name, name) holds; hidden entries skipped. */
static int list_dir(const char *dir, int (*keep)(const char *path, const char *name), char ***names,
                    size_t *n)
{
    *names = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return ss_error_system("bag", "cannot open directory %s", dir);
    size_t cap = 0;
    struct dirent *e;
    char path[4096];
    int rc = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path) {
            rc = ss_error("bag", "path too long under %s", dir);
            break;
        }
        if (!keep(path, e->d_name)) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 64;
            char **p = realloc(*names, cap * sizeof *p);
            if (!p) {
                rc = ss_error("bag", "out of memory listing %s", dir);
                break;
            }
            *names = p;
        }
        if (!((*names)[*n] = strdup(e->d_name))) {
            rc = ss_error("bag", "out of memory listing %s", dir);
            break;
        }
        (*n)++;
    }
    closedir(d);
    if (rc) {
        for (size_t i = 0; i < *n; i++)
            free((*names)[i]);
        free(*names);
        *names = NULL;
        *n = 0;
        return -1;
    }
    if (*n) qsort(*names, *n, sizeof **names, cmp_str);
    return 0;
}

static int keep_dir(const char *path, const char *name)
{
    return is_dir(path);
}

static int keep_image(const char *path, const char *name)
{
    return is_image(name) && !is_dir(path);
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* Parses "LYT,NGS" into codes; each must be a plain folder name. */
static int parse_codes(const char *list, char ***codes, size_t *n)
{
    *codes = NULL;
    *n = 0;
    const char *p = list;
    while (1) {
        const char *q = strchr(p, ',');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        int ok = len > 0 && len < 64;
        for (size_t i = 0; ok && i < len; i++)
            ok = isalnum((unsigned char)p[i]) || p[i] == '_' || p[i] == '-' || p[i] == '.';
        if (!ok || (len == 1 && p[0] == '.')) {
            free_names(*codes, *n);
            *codes = NULL;
            *n = 0;
            return ss_error("bag", "bad normal class list '%s' (expected codes like LYT,NGS)",
                            list);
        }
        char **c = realloc(*codes, (*n + 1) * sizeof *c);
        if (!c || !(c[*n] = strndup(p, len))) {
            free(c ? c : *codes);
            *codes = NULL;
            *n = 0;
            return ss_error("bag", "out of memory");
        }
        *codes = c;
        (*n)++;
        if (!q) break;
        p = q + 1;
    }
    return 0;
}

void ss_cellset_destroy(ss_cellset_t **pcs)
{
    if (!pcs || !*pcs) return;
    ss_cellset_t *cs = *pcs;
    for (size_t i = 0; i < cs->n; i++) {
        free(cs->cells[i].path);
        free(cs->cells[i].cell_id);
    }
    free(cs->cells);
    free_names(cs->classes, cs->n_classes);
    free_names(cs->sources, cs->n_sources);
    free(cs);
    *pcs = NULL;
}

/* dir/cells.csv, when present (lib/cells reads it): the source image of each listed cell. */
static int load_sources(const char *dir, ss_cellset_t *cs)
{
    for (size_t i = 0; i < cs->n; i++) cs->cells[i].source = -1;
    cs->n_unsourced = cs->n;
    ss_cell_sources_t *src = NULL;
    if (ss_cell_sources_load(dir, &src)) return -1;
    if (!src) return 0;
    size_t n = ss_cell_sources_count(src);
    int rc = 0;
    if (!(cs->sources = calloc(n ? n : 1, sizeof *cs->sources))) rc = ss_error("bag", "out of memory");
    for (size_t k = 0; !rc && k < n; k++, cs->n_sources++)
        if (!(cs->sources[k] = strdup(ss_cell_sources_name(src, (int)k))))
            rc = ss_error("bag", "out of memory");
    for (size_t i = 0; !rc && i < cs->n; i++) {
        cs->cells[i].source = ss_cell_sources_find(src, cs->cells[i].cell_id);
        cs->n_unsourced -= cs->cells[i].source >= 0;
    }
    ss_cell_sources_destroy(&src);
    return rc;
}

int ss_cellset_load(const char *dir, const char *normal_codes, ss_cellset_t **out)
{
    *out = NULL;
    char **normal = NULL;
    size_t n_normal_codes = 0;
    if (parse_codes(normal_codes ? normal_codes : "LYT", &normal, &n_normal_codes)) return -1;
    /* absolute paths keep the manifest usable from any working directory */
    char *abs = realpath(dir, NULL);
    if (!abs) {
        free_names(normal, n_normal_codes);
        return ss_error_system("bag", "cannot open cell folder %s", dir);
    }
    dir = abs;
    ss_cellset_t *cs = calloc(1, sizeof *cs);
    if (!cs) {
        free_names(normal, n_normal_codes);
        free(abs);
        return ss_error("bag", "out of memory");
    }
    int rc = list_dir(dir, keep_dir, &cs->classes, &cs->n_classes);
    if (!rc && cs->n_classes == 0)
        rc = ss_error("bag", "no class folders in %s (expected %s/<CODE>/*.png)", dir, dir);
    for (size_t k = 0; !rc && k < n_normal_codes; k++) {
        int found = 0;
        for (size_t c = 0; c < cs->n_classes; c++)
            found |= !strcmp(cs->classes[c], normal[k]);
        if (!found) rc = ss_error("bag", "normal class '%s' has no folder in %s", normal[k], dir);
    }
    size_t cap = 0;
    char sub[4096], path[8192];
    for (size_t c = 0; !rc && c < cs->n_classes; c++) {
        const char *code = cs->classes[c];
        int abnormal = 1;
        for (size_t k = 0; k < n_normal_codes; k++)
            if (!strcmp(code, normal[k])) abnormal = 0;
        if (snprintf(sub, sizeof sub, "%s/%s", dir, code) >= (int)sizeof sub) {
            rc = ss_error("bag", "path too long under %s", dir);
            break;
        }
        char **files = NULL;
        size_t nf = 0;
        if ((rc = list_dir(sub, keep_image, &files, &nf))) break;
        for (size_t f = 0; !rc && f < nf; f++) {
            if (cs->n == cap) {
                cap = cap ? 2 * cap : 1024;
                ss_cell_image_t *p = realloc(cs->cells, cap * sizeof *p);
                if (!p) {
                    rc = ss_error("bag", "out of memory loading %s", dir);
                    break;
                }
                cs->cells = p;
            }
            ss_cell_image_t *ci = &cs->cells[cs->n];
            if (snprintf(path, sizeof path, "%s/%s", sub, files[f]) >= (int)sizeof path) {
                rc = ss_error("bag", "path too long: %s/%s", sub, files[f]);
                break;
            }
            ci->path = strdup(path);
            snprintf(path, sizeof path, "%s/%s", code, files[f]);
            ci->cell_id = strdup(path);
            if (!ci->path || !ci->cell_id) {
                free(ci->path);
                free(ci->cell_id);
                rc = ss_error("bag", "out of memory loading %s", dir);
                break;
            }
            ci->cls = cs->classes[c]; /* shared with the class list */
            ci->abnormal = abnormal;
            if (abnormal)
                cs->n_abnormal++;
            else
                cs->n_normal++;
            cs->n++;
        }
        free_names(files, nf);
    }
    free_names(normal, n_normal_codes);
    if (!rc && cs->n == 0) rc = ss_error("bag", "no cell images under %s", dir);
    if (rc) {
        free(abs);
        ss_cellset_destroy(&cs);
        return -1;
    }
    qsort(cs->cells, cs->n, sizeof *cs->cells, cmp_cell);
    if (load_sources(abs, cs)) {
        free(abs);
        ss_cellset_destroy(&cs);
        return -1;
    }
    free(abs);
    *out = cs;
    return 0;
}
