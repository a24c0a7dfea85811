/* The training methods' names and properties (train.h). */
#include <string.h>

#include "slidestream/error.h"
#include "slidestream/train.h"

static const char *const names[] = {
    [SS_TRAIN_SLAM_AGS] = "slam-ags",     [SS_TRAIN_PCGRAD] = "pcgrad",
    [SS_TRAIN_CAGRAD] = "cagrad",         [SS_TRAIN_MGDA] = "mgda",
    [SS_TRAIN_WEAKSUPCON] = "weaksupcon", [SS_TRAIN_SIMCLR] = "simclr",
    [SS_TRAIN_SUPERVISED] = "supervised",
};

int ss_train_method_parse(const char *name, ss_train_method_t *method)
{
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (name && !strcmp(name, names[i])) {
            *method = (ss_train_method_t)i;
            return 0;
        }
    return ss_error("train", "unknown method '%s' (want slam-ags, pcgrad, cagrad, mgda, "
                             "weaksupcon, simclr or supervised)",
                    name ? name : "(none)");
}

const char *ss_train_method_name(ss_train_method_t method)
{
    return (unsigned)method < sizeof names / sizeof names[0] ? names[method] : "?";
}

int ss_train_method_contrastive(ss_train_method_t method)
{
    return method != SS_TRAIN_SUPERVISED;
}

int ss_train_method_two_task(ss_train_method_t method)
{
    return method == SS_TRAIN_SLAM_AGS || method == SS_TRAIN_PCGRAD || method == SS_TRAIN_CAGRAD ||
           method == SS_TRAIN_MGDA;
}
