/* optim.c -- being written */
#include "engine.h"
