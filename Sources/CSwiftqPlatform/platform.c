int cswiftqplatform_placeholder(void) { return 0; }
