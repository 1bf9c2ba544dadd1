# Fails when a test binary's gtest suites and the SUITES list tandem_suite_tests() was given
# differ: a suite in the binary but not in the list would never run under ctest, and a listed
# suite the binary lacks would run zero tests and pass.
#   cmake -DBINARY=<test binary> -DSUITES=<suite,suite,...> -DLISTED_IN=<file> -P check_suites.cmake
cmake_minimum_required(VERSION 3.25)
execute_process(COMMAND "${BINARY}" --gtest_list_tests OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${BINARY} --gtest_list_tests failed (${rc}):\n${out}${err}")
endif()

# Suite lines start in column 0 with the suite's name and a '.' (a typed suite's line goes on with
# "  # ..."); test lines are indented. Matched in the whole text: a line may hold characters
# (';', '[') that CMake's lists do not keep.
string(REGEX MATCHALL "(^|\n)[A-Za-z0-9_/]+\\." found "${out}")
set(in_binary "")
foreach(suite IN LISTS found)
  string(REGEX REPLACE "[\n.]" "" suite "${suite}")
  list(APPEND in_binary "${suite}")
endforeach()
if(NOT in_binary)
  message(FATAL_ERROR "${BINARY} lists no test suite:\n${out}")
endif()

string(REPLACE "," ";" listed "${SUITES}")
set(unlisted "")
foreach(suite IN LISTS in_binary)
  if(NOT suite IN_LIST listed)
    list(APPEND unlisted "${suite}")
  endif()
endforeach()
set(missing "")
foreach(suite IN LISTS listed)
  if(NOT suite IN_LIST in_binary)
    list(APPEND missing "${suite}")
  endif()
endforeach()

get_filename_component(name "${BINARY}" NAME)
set(problems "")
if(unlisted)
  string(REPLACE ";" " " unlisted "${unlisted}")
  string(APPEND problems "${name} has suites that ctest never runs: ${unlisted}\n"
         "  add them to the SUITES of tandem_suite_tests(${name} ...) in ${LISTED_IN}\n")
endif()
if(missing)
  string(REPLACE ";" " " missing "${missing}")
  string(APPEND problems "tandem_suite_tests(${name} ...) in ${LISTED_IN} lists suites ${name} does not have: ${missing}\n")
endif()
if(problems)
  message(FATAL_ERROR "${problems}")
endif()
list(LENGTH in_binary n)
message(STATUS "${name}: all ${n} suites are listed")
