// test_python.c: runs the Python package's tests (tests/python/test_gemma3c.py) with Debian's
// python3 and numpy against this build's libgemma3.so and gemma3 program. Where python3 or
// numpy is missing it says so and passes (scripts/deps.sh installs python3-numpy). Under the
// sanitizers the library needs their runtimes loaded first (LD_PRELOAD), and leak checking
// stays off: the interpreter itself keeps memory until exit.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

int main(void) {
    const char *py = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
    if (sh("%s -c 'import numpy' >/dev/null 2>&1", py) != 0) {
        printf("skipped: %s with numpy not found (apt-get install python3-numpy, or scripts/deps.sh)\n", py);
        return 0;
    }
    const char *build = getenv("BUILD") ? getenv("BUILD") : "build/rel";
    const char *bin = getenv("BIN") ? getenv("BIN") : "./gemma3";
    char lib[4096], cwd[4096], pre[1024] = "";
    if (!getcwd(cwd, sizeof cwd)) return 2;
    snprintf(lib, sizeof lib, "%s/%s/libgemma3.so", cwd, build);
    if (access(lib, R_OK) != 0) {
        fprintf(stderr, "%s is missing: build it with make %s/libgemma3.so\n", lib, build);
        return 1;
    }
    if (strstr(build, "san")) {  // the ASan/UBSan runtimes before the interpreter's own code
        FILE *f = popen("echo $(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)", "r");
        if (f && fgets(pre, sizeof pre, f)) pre[strcspn(pre, "\n")] = 0;
        if (f) pclose(f);
    }
    char tmp[] = "/tmp/g3pyXXXXXX";
    if (!mkdtemp(tmp)) return 2;
    // one thread: the tiny model runs in milliseconds, and on a shared machine extra OpenMP
    // threads only wait for cores (results do not depend on the thread count)
    int rc = sh("OMP_NUM_THREADS=1 GEMMA3_LIB=%s BIN=%s%s%s %s%s%s %s tests/python/test_gemma3c.py %s", lib, bin[0] == '/' ? "" : cwd, bin[0] == '/' ? "" : "/",
                bin, pre[0] ? "LD_PRELOAD=" : "", pre, pre[0] ? " ASAN_OPTIONS=detect_leaks=0:verify_asan_link_order=0" : "", py, tmp);
    CHECK(rc == 0, "the Python package's tests failed (see above)");
    sh("rm -rf %s", tmp);
    return check_done();
}
