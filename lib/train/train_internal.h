/* Internal declarations shared by lib/train's files (not a public header). */
#ifndef SS_TRAIN_INTERNAL_H
#define SS_TRAIN_INTERNAL_H

/* Redraw <dir>/curves.svg from <dir>/steps.csv: losses, the cosine between the two task
 * gradients, gradient norms, learning rate and throughput against the step. */
int ss_train_curves(const char *dir);

#endif
