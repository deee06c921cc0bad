/* yoke_io.h -- (being written; included by yoke.h) */
#ifndef YOKE_IO_H
#define YOKE_IO_H
#endif
