// The source file of the target fiber_test_pch, which only exists to
// compile GoogleTest's header once into a precompiled header that every
// test program reuses (common/CMakeLists.txt). Nothing to compile here.
