int cswiftqplatform_placeholder(void);
