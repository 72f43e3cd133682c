// rng.h: the random generator lives in base (shared with the sampler); this name is kept for
// the training code's includes.
#include "../base/rng.h"
