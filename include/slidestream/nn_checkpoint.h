/* slidestream — HDF5 checkpoints: one root dataset per tensor, named exactly as the PyTorch
 * state_dict key ("conv1.weight", "bn1.num_batches_tracked", "projector.0.weight", ...), plus
 * root attributes describing the architecture and preprocessing. Float tensors are float32
 * datasets shaped as in PyTorch; counters are int64 scalar (shape ()) datasets, as h5py writes a
 * 0-d torch tensor's .numpy(). Files are written under a temporary name and renamed, so a
 * crash never leaves a file that looks complete. The caller owns every buffer; the table
 * only points into it. A tensor name "group/name" is written inside that group; the group
 * "trainer" holds a training run's state (optimiser buffers, epoch, step) beside the model's
 * tensors, and loads of the model skip it.
 */
#ifndef SLIDESTREAM_NN_CHECKPOINT_H
#define SLIDESTREAM_NN_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

typedef enum { SS_DTYPE_F32, SS_DTYPE_I64 } ss_dtype_t;

#define SS_CKPT_MAX_DIM 4
#define SS_CKPT_TRAINER_GROUP "trainer"

/* One named tensor: a view into the caller's storage. ndim 0 = scalar. */
typedef struct {
    const char *name;
    ss_dtype_t dtype;
    int ndim;
    int64_t shape[SS_CKPT_MAX_DIM];
    void *data; /* float * or int64_t * */
} ss_ckpt_tensor_t;

/* Root attributes. */
typedef struct {
    char arch[32];           /* "resnet18" | "resnet34" */
    double width_multiplier; /* 1.0 = torchvision widths */
    int input_size;          /* pixels (square) */
    double mean[3], std[3];  /* RGB in [0, 1]: x = (rgb - mean) / std */
    char truncate_after[32]; /* "" (attribute absent) or "layer3" */
} ss_ckpt_meta_t;

/* Number of elements of t (1 for a scalar). */
size_t ss_ckpt_numel(const ss_ckpt_tensor_t *t);

int ss_ckpt_save(const char *path, const ss_ckpt_meta_t *meta, const ss_ckpt_tensor_t *tensors,
                 int count);

/* A root attribute of another model kind (the MIL aggregators): a string when text is not
 * NULL, else a number (written as float64). */
typedef struct {
    const char *name;
    const char *text;
    double value;
} ss_ckpt_attr_t;

/* As ss_ckpt_save, with meta optional (NULL: none of the ResNet attributes) and further root
 * attributes. */
int ss_ckpt_save_attrs(const char *path, const ss_ckpt_meta_t *meta, const ss_ckpt_attr_t *attrs,
                       int nattrs, const ss_ckpt_tensor_t *tensors, int count);

/* Read the named root attributes: numbers into .value; for an entry whose .text is non-NULL
 * on entry, the string is copied into text[text_size] and .text points at it. A missing
 * attribute is an error naming the file and the attribute. */
int ss_ckpt_read_attrs(const char *path, ss_ckpt_attr_t *attrs, int nattrs, char *text,
                       size_t text_size);

/* Reads only the attributes. Missing `mean`/`std` default to ImageNet's; missing `arch`,
 * `width_multiplier` or `input_size` is an error. */
int ss_ckpt_read_meta(const char *path, ss_ckpt_meta_t *meta);

enum {
    SS_CKPT_STRICT = 0,
    SS_CKPT_IGNORE_EXTRA = 1,  /* datasets in the file that the table lacks are skipped */
    SS_CKPT_ALLOW_MISSING = 2, /* tensors of the table absent from the file are left as is */
};

/* Fills every tensor of the table from the file. Shapes must match exactly (a counter may
 * also be stored with shape (1)); an error names the file and the offending tensor. meta may
 * be NULL. */
int ss_ckpt_load(const char *path, ss_ckpt_meta_t *meta, const ss_ckpt_tensor_t *tensors, int count,
                 int flags);

/* Shape of one dataset: 0 and *ndim/shape filled, 1 if the file has no such dataset, -1 on
 * error. */
int ss_ckpt_dataset_shape(const char *path, const char *name, int *ndim,
                          int64_t shape[SS_CKPT_MAX_DIM]);

#endif
