# Decides whether the cuda backend plugin (plugins/backends/cuda) is built; included by the
# top-level CMakeLists.txt. The plugin needs three things: a CUDA toolkit (nvcc), cuDNN (libcudnn,
# cudnn.h) and cuDNN's header-only C++ frontend (cudnn_frontend.h, from the PyPI package
# nvidia-cudnn-frontend, which tools/setup.sh installs when nvcc is present).
#
# LAB_WITH_CUDA: AUTO (default) builds the plugin when all three are found, and otherwise says in
# one line which one is missing and builds everything else; ON makes a missing one a configure
# error; OFF skips the plugin. Sets LAB_HAVE_CUDA, LAB_CUDNN_LIBRARY, LAB_CUDNN_INCLUDE_DIR and
# LAB_CUDNN_FRONTEND_INCLUDE_DIR, and enables the CUDA language (sm_90 only unless
# CMAKE_CUDA_ARCHITECTURES says otherwise).
set(LAB_WITH_CUDA AUTO CACHE STRING "Build the CUDA/cuDNN backend plugin: AUTO, ON or OFF")
set_property(CACHE LAB_WITH_CUDA PROPERTY STRINGS AUTO ON OFF)
set(LAB_HAVE_CUDA OFF)
if(NOT LAB_WITH_CUDA MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "LAB_WITH_CUDA is '${LAB_WITH_CUDA}'; expected AUTO, ON or OFF.")
endif()
if(LAB_WITH_CUDA STREQUAL "OFF")
  message(STATUS "LAB_WITH_CUDA is OFF: the cuda backend plugin is not built")
  return()
endif()

# A missing piece: an error under ON, one status line under AUTO (the caller then returns). The
# arguments after WHAT are the fix, joined into one sentence.
function(lab_cuda_missing what)
  string(JOIN "" fix ${ARGN})
  if(LAB_WITH_CUDA STREQUAL "ON")
    message(FATAL_ERROR "LAB_WITH_CUDA is ON but ${what}. To fix: ${fix}; or configure with "
                        "-DLAB_WITH_CUDA=AUTO or OFF to build without the cuda backend.")
  endif()
  message(STATUS "cuda backend plugin not built: ${what} (to build it: ${fix})")
endfunction()

# 1. The toolkit.
if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX} AND EXISTS /usr/local/cuda/bin/nvcc)
  set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
endif()
include(CheckLanguage)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  lab_cuda_missing("no CUDA toolkit (nvcc) was found"
                   "install the CUDA toolkit, or set CUDACXX or -DCMAKE_CUDA_COMPILER=/path/to/nvcc")
  return()
endif()
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES 90)
endif()
enable_language(CUDA)
# CMake 3.25 knows nvcc's dialect flags up to C++17; nvcc 12+ takes -std=c++20, which the plugin's
# sources (which include the C++20 SDK headers) need.
if(NOT DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION OR CMAKE_CUDA20_STANDARD_COMPILE_OPTION STREQUAL "")
  set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
  set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
endif()
find_package(CUDAToolkit QUIET)
if(NOT CUDAToolkit_FOUND)
  lab_cuda_missing("nvcc (${CMAKE_CUDA_COMPILER}) was found without the toolkit's libraries (cudart, cuBLASLt)"
                   "install the whole CUDA toolkit")
  return()
endif()

# 2. cuDNN, next to the toolkit or on the system paths.
find_library(LAB_CUDNN_LIBRARY cudnn HINTS ${CUDAToolkit_LIBRARY_DIR} ${CUDAToolkit_LIBRARY_ROOT}/lib64)
find_path(LAB_CUDNN_INCLUDE_DIR cudnn.h HINTS ${CUDAToolkit_INCLUDE_DIRS})
if(NOT LAB_CUDNN_LIBRARY OR NOT LAB_CUDNN_INCLUDE_DIR)
  lab_cuda_missing("a CUDA toolkit was found without cuDNN (libcudnn.so, cudnn.h)"
                   "install cuDNN 9 next to the toolkit, or point LAB_CUDNN_LIBRARY and LAB_CUDNN_INCLUDE_DIR at it")
  return()
endif()

# 3. cuDNN's C++ frontend headers: LAB_CUDNN_FRONTEND_DIR, else the site-packages of the project's
# .venv or of python3 (where pip puts nvidia-cudnn-frontend's include/), else the system paths.
set(lab_frontend_hints ${LAB_CUDNN_FRONTEND_DIR})
foreach(python ${PROJECT_SOURCE_DIR}/.venv/bin/python3 python3)
  execute_process(COMMAND ${python} -c "import sysconfig; print(sysconfig.get_paths()['purelib'])"
                  OUTPUT_VARIABLE purelib OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE failed)
  if(NOT failed AND purelib)
    list(APPEND lab_frontend_hints ${purelib}/include)
  endif()
endforeach()
find_path(LAB_CUDNN_FRONTEND_INCLUDE_DIR cudnn_frontend.h HINTS ${lab_frontend_hints} NO_DEFAULT_PATH)
find_path(LAB_CUDNN_FRONTEND_INCLUDE_DIR cudnn_frontend.h)
if(NOT LAB_CUDNN_FRONTEND_INCLUDE_DIR)
  lab_cuda_missing("cuDNN's C++ frontend headers (cudnn_frontend.h) were not found"
                   "run tools/setup.sh (it pip-installs nvidia-cudnn-frontend when nvcc is present) and "
                   "reconfigure, or pass -DLAB_CUDNN_FRONTEND_DIR=<folder with cudnn_frontend.h>")
  return()
endif()

set(LAB_HAVE_CUDA ON)

# lab_plugin_cuda_sources(<kind> <name> SOURCES src.cu... [INCLUDE_DIRS dir...]): the CUDA sources
# of plugin <kind>/<name>: the cuda backend's own kernels, or kernels another plugin registers for
# the cuda backend (lab/kernels.h), e.g. an optimizer's fused update. Call it after lab_add_plugin,
# under if(LAB_HAVE_CUDA). The sources compile as an object library with liblab_core's include
# folders and definitions (plus INCLUDE_DIRS) and nvcc's flags, and the plugin links the CUDA runtime.
function(lab_plugin_cuda_sources kind name)
  cmake_parse_arguments(ARG "" "" "SOURCES;INCLUDE_DIRS" ${ARGN})
  set(plugin lab_plugin_${kind}_${name})
  set(objects ${plugin}_cuda_kernels)
  add_library(${objects} OBJECT ${ARG_SOURCES})
  target_include_directories(${objects} PRIVATE $<TARGET_PROPERTY:lab_core,INTERFACE_INCLUDE_DIRECTORIES>
                                                ${ARG_INCLUDE_DIRS})
  target_compile_definitions(${objects} PRIVATE $<TARGET_PROPERTY:lab_core,INTERFACE_COMPILE_DEFINITIONS>)
  set(cuda_flags --expt-relaxed-constexpr -Xcompiler=-Wall,-Wextra)
  if(LAB_WERROR)
    list(APPEND cuda_flags -Werror=all-warnings -Xcompiler=-Werror)
  endif()
  target_compile_options(${objects} PRIVATE ${cuda_flags})
  set_target_properties(${objects} PROPERTIES
    CUDA_STANDARD 20
    CUDA_STANDARD_REQUIRED ON
    POSITION_INDEPENDENT_CODE ON
    CUDA_VISIBILITY_PRESET hidden
    CUDA_RUNTIME_LIBRARY Shared)
  add_dependencies(${objects} lab_core)
  target_sources(${plugin} PRIVATE $<TARGET_OBJECTS:${objects}>)
  target_link_libraries(${plugin} PRIVATE CUDA::cudart)
endfunction()
