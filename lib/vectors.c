/* vectors.c -- being written */
#include "engine.h"
