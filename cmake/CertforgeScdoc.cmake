# cmake -DSCDOC=scdoc -DIN=page.scd -DOUT=page -DPROJECT_VERSION=V -P CertforgeScdoc.cmake
# @PROJECT_VERSION@ substituted, then scdoc; OUT is replaced only when
# scdoc succeeds (a syntax error fails the build, naming the line).
configure_file(${IN} ${OUT}.scd @ONLY)
execute_process(COMMAND ${SCDOC} INPUT_FILE ${OUT}.scd OUTPUT_FILE ${OUT}.tmp
                ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  file(REMOVE ${OUT}.tmp)
  message(FATAL_ERROR "scdoc ${IN}: ${err}")
endif()
file(RENAME ${OUT}.tmp ${OUT})
file(REMOVE ${OUT}.scd)
