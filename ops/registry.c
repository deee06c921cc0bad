/* registry.c -- the op table, generated from ops.def. */
#include "../lib/engine.h"

#include <string.h>

/* The enum: YK_OPID_add, ..., and YK_OPID_COUNT. */
enum {
#define YK_OP(name) YK_OPID_##name,
#include "ops.def"
#undef YK_OP
    YK_OPID_COUNT
};

static const yk_op_def *const op_table[] = {
#define YK_OP(name) &yk_op_##name,
#include "ops.def"
#undef YK_OP
};

_Static_assert(sizeof op_table / sizeof op_table[0] == YK_OPID_COUNT,
               "op table and ops.def disagree");

int yk_op_count(void) { return YK_OPID_COUNT; }

const yk_op_def *yk_op_at(int i)
{
    return i >= 0 && i < YK_OPID_COUNT ? op_table[i] : NULL;
}

const yk_op_def *yk_op_find(const char *name)
{
    if (!name)
        return NULL;
    for (int i = 0; i < YK_OPID_COUNT; i++)
        if (strcmp(op_table[i]->name, name) == 0)
            return op_table[i];
    return NULL;
}
