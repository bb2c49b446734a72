#include <stdio.h>
int add(int, int);
int main(void) { printf("%d\n", add(3, 4)); return 0; }
