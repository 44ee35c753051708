# tandem-spec(5), made from docs/spec.md (the one source of the spec's
# reference) by go-md2man: cmake -DSPEC=... -DOUT=... -DMD2MAN=...
# -DVERSION=... -P tandem-spec.cmake
file(READ ${SPEC} body)
# The document's own title gives way to the page's NAME and DESCRIPTION;
# links keep their text.
string(REGEX REPLACE "^# [^\n]*\n" "" body "${body}")
string(REGEX REPLACE "\\[([^]]*)\\]\\([^)]*\\)" "\\1" body "${body}")
file(WRITE ${OUT}.md
  "% TANDEM-SPEC 5 \"\" \"tandem ${VERSION}\" \"File Formats\"\n\n"
  "# NAME\n\ntandem-spec - the migration spec that tandemd runs (YAML)\n\n"
  "# DESCRIPTION\n${body}\n"
  "# SEE ALSO\n\n**tandemd**(8), **tandemctl**(1). The spec's JSON Schema, for editors: "
  "/usr/share/tandem/schema/spec.schema.json (**tandemd schema spec**).\n")
execute_process(COMMAND ${MD2MAN} -in ${OUT}.md -out ${OUT} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "go-md2man failed on ${OUT}.md")
endif()
