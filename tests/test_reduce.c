#include <criterion/criterion.h>
/* filled in by the work on this family */
