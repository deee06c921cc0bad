/* gradcheck -- STUB, being written. */
#include "yoke.h"
int main(void) { return 0; }
