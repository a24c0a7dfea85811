/* Sorted directory listings for lib/cells (private): cell folders, image folders, label folders.
 * Names are returned in byte order so that everything built from them is independent of the order
 * readdir happens to use; hidden entries (a leading '.') are never listed, which is also how
 * half-written files stay invisible. The caller frees the names with ss_cells_names_free. */
#ifndef SS_CELLS_LISTING_H
#define SS_CELLS_LISTING_H

#include <stddef.h>

/* What to keep of dir's entries: directories, or regular files with one of `suffixes`
 * (case-insensitive; NULL-terminated; NULL = every regular file). */
typedef struct {
    int dirs;
    const char *const *suffixes;
} ss_listing_filter_t;

/* The image suffixes the cell readers accept: .png .jpg .jpeg .bmp .tif .tiff */
extern const char *const ss_cells_image_suffixes[];

int ss_cells_list(const char *dir, const ss_listing_filter_t *keep, char ***names, size_t *n);
void ss_cells_names_free(char **names, size_t n);

/* 1 when name ends with one of the NULL-terminated suffixes (case-insensitive). */
int ss_cells_has_suffix(const char *name, const char *const *suffixes);

#endif
