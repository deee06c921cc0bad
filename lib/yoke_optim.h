/* yoke_optim.h -- (being written; included by yoke.h) */
#ifndef YOKE_OPTIM_H
#define YOKE_OPTIM_H
#endif
