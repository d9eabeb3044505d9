# embed.cmake — turns a dashboard asset into a C array, so the server never
# reads files at run time. cmake -DIN=file -DOUT=file.c -DSYM=name -P embed.cmake
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR len "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" bytes "${bytes}")
file(WRITE ${OUT} "/* generated from ${IN} by embed.cmake */\n#include <stddef.h>\n"
  "const char ${SYM}[] = {\n${bytes}0x00};\n"
  "const size_t ${SYM}_len = ${len};\n")
