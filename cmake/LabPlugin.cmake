# lab_add_plugin(<kind> <name> SOURCES src... [LIBRARIES lib...] [OUTPUT_DIR dir])
#
# Builds one plugin library, <kind>_<name>.so, linked against liblab_core (lab::core): the
# layers a plugin builds on (tensors, backends, kernels, nn, the registry), not the trainer or
# the results store, which only the host programs need. In-tree it goes
# to the build's plugin folder (build/plugins) and is installed into <prefix>/lib/lab/plugins;
# out of tree (after find_package(Lab)) it goes to <your build>/plugins unless OUTPUT_DIR says
# otherwise, and is installed only where the project sets LAB_PLUGIN_INSTALL_DIR.
#
# Every plugin is compiled the same way wherever it is built: C++20 without GNU extensions, like
# liblab, and hidden symbol visibility, so that the only symbols a plugin exports are the two
# entry points LAB_PLUGIN writes (lab/plugin.h) and two plugins can never bind to each other's
# internals.
function(lab_add_plugin kind name)
  cmake_parse_arguments(ARG "" "OUTPUT_DIR" "SOURCES;LIBRARIES" ${ARGN})
  if(NOT ARG_SOURCES)
    message(FATAL_ERROR "lab_add_plugin(${kind} ${name}): no SOURCES given; "
                        "write e.g. lab_add_plugin(${kind} ${name} SOURCES ${name}.cpp)")
  endif()
  set(target lab_plugin_${kind}_${name})
  add_library(${target} MODULE ${ARG_SOURCES})
  target_link_libraries(${target} PRIVATE lab::core ${ARG_LIBRARIES})
  # Every symbol a plugin uses must come from what it links: a call into liblab's host part (the
  # trainer, the results store) fails here, at link time, instead of when labrun loads it.
  target_link_options(${target} PRIVATE -Wl,--no-undefined)
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
    CXX_STANDARD 20
    CXX_STANDARD_REQUIRED ON
    CXX_EXTENSIONS OFF
    CXX_VISIBILITY_PRESET hidden
    # An installed plugin sits in <prefix>/lib/lab/plugins; liblab is two folders up. (labrun has
    # liblab loaded already, so this matters only to other programs that open a plugin.)
    INSTALL_RPATH "$ORIGIN/../..")
  # In-tree, `lab_plugins` builds every plugin (tests depend on it).
  if(TARGET lab_plugins)
    add_dependencies(lab_plugins ${target})
  endif()
  if(DEFINED LAB_PLUGIN_INSTALL_DIR)
    install(TARGETS ${target} LIBRARY DESTINATION ${LAB_PLUGIN_INSTALL_DIR})
  endif()
endfunction()
