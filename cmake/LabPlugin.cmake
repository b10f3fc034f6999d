# lab_add_plugin(<kind> <name> SOURCES src... [LIBRARIES lib...])
#
# Builds one plugin library, <kind>_<name>.so, into the build's plugin folder (build/plugins),
# linked against liblab. Used in-tree and, through find_package(Lab), out of tree.
function(lab_add_plugin kind name)
  cmake_parse_arguments(ARG "" "OUTPUT_DIR" "SOURCES;LIBRARIES" ${ARGN})
  set(target lab_plugin_${kind}_${name})
  add_library(${target} MODULE ${ARG_SOURCES})
  target_link_libraries(${target} PRIVATE lab::lab ${ARG_LIBRARIES})
  if(NOT ARG_OUTPUT_DIR)
    if(DEFINED LAB_PLUGIN_OUTPUT_DIR)
      set(ARG_OUTPUT_DIR ${LAB_PLUGIN_OUTPUT_DIR})
    else()
      set(ARG_OUTPUT_DIR ${CMAKE_BINARY_DIR}/plugins)
    endif()
  endif()
  set_target_properties(${target} PROPERTIES
    PREFIX ""
    OUTPUT_NAME ${kind}_${name}
    LIBRARY_OUTPUT_DIRECTORY ${ARG_OUTPUT_DIR}
    CXX_VISIBILITY_PRESET hidden)
  # In-tree, `lab_plugins` builds every plugin (tests depend on it).
  if(TARGET lab_plugins)
    add_dependencies(lab_plugins ${target})
  endif()
  if(DEFINED LAB_PLUGIN_INSTALL_DIR)
    install(TARGETS ${target} LIBRARY DESTINATION ${LAB_PLUGIN_INSTALL_DIR})
  endif()
endfunction()
