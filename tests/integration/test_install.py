"""`meson install` puts the CLI, the library, its headers and torshpkg.pc in place, and a program
built only from what was installed (through pkg-config) can write and read a package."""
import glob
import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from helpers import TempDirTest, run  # noqa: E402

PROGRAM = r"""
#include <torshpkg/package.h>
#include <torshpkg/package_writer.h>
#include <cstdio>
#include <string>
int main(int argc, char** argv) {
  torshpkg::Manifest header;
  header.name = "installed";
  header.version = "1.0.0";
  torshpkg::PackageWriter writer(header);
  const std::string text = "hello from an installed libtorshpkg";
  writer.add_bytes("hello.txt", std::vector<uint8_t>(text.begin(), text.end()));
  writer.write(argv[1]);
  const auto pkg = torshpkg::Package::open(argv[1]);
  const torshpkg::FileNode* f = pkg->find("resources/hello.txt");
  std::string out(f->size, '\0');
  pkg->read(*f, 0, std::span(reinterpret_cast<uint8_t*>(out.data()), out.size()));
  std::puts(out.c_str());
  return out == text ? 0 : 1;
}
"""


class Install(TempDirTest):
    def test_installed_files_build_a_working_program(self):
        build = os.environ["BUILD_ROOT"]
        dest = self.path("dest")
        run("meson", "install", "-C", build, "--no-rebuild", "--destdir", dest)
        binaries = glob.glob(dest + "/**/bin/torshpkg", recursive=True)
        pcs = glob.glob(dest + "/**/pkgconfig/torshpkg.pc", recursive=True)
        libs = glob.glob(dest + "/**/libtorshpkg.so*", recursive=True)
        self.assertEqual(len(binaries), 1)
        self.assertEqual(len(pcs), 1)
        self.assertTrue(libs)
        self.assertTrue(glob.glob(dest + "/**/include/torshpkg/package.h", recursive=True))
        env = dict(os.environ, PKG_CONFIG_PATH=os.path.dirname(pcs[0]), PKG_CONFIG_SYSROOT_DIR=dest)
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "torshpkg"], env=env,
                               capture_output=True, check=True).stdout.decode().split()
        src = self.write("prog.cpp", PROGRAM.encode())
        exe = self.path("prog")
        run("c++", src, "-o", exe, *flags)  # torshpkg.pc says -std=c++20
        libdir = os.path.dirname(libs[0])
        out = subprocess.run([exe, self.path("p.torshpkg")], capture_output=True,
                             env=dict(os.environ, LD_LIBRARY_PATH=libdir))
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout.strip(), b"hello from an installed libtorshpkg")
        listing = subprocess.run([binaries[0], "ls", self.path("p.torshpkg")], capture_output=True,
                                 env=dict(os.environ, LD_LIBRARY_PATH=libdir), check=True)
        self.assertEqual(listing.stdout, b"manifest.json\nresources/hello.txt\n")

    def test_the_library_exports_the_public_api_only(self):
        build = os.environ["BUILD_ROOT"]
        lib = os.path.join(build, "libtorshpkg", "libtorshpkg.so")
        out = subprocess.run(["nm", "-DC", "--defined-only", lib], capture_output=True,
                             check=True).stdout.decode()
        names = set()
        for line in out.splitlines():
            m = re.search(r" torshpkg::(?:la::)?(\w+)", line)
            if m and not line.split()[-1].startswith(("typeinfo", "vtable", "VTT", "guard")):
                names.add(m.group(1))
        root = os.path.join(os.path.dirname(__file__), "..", "..", "libtorshpkg")
        public = ""
        for h in glob.glob(os.path.join(root, "include", "torshpkg", "*.h")):
            with open(h) as f:
                public += f.read()
        declared = set(re.findall(r"\w+", public))
        self.assertIn("Package", names)  # the API is there
        self.assertIn("load_tensors", names)
        # Every exported name is declared in a public header; none is a private class.
        self.assertEqual(sorted(n for n in names if n not in declared), [])
        private = set()
        for h in glob.glob(os.path.join(root, "src", "*.h")):
            with open(h) as f:
                private |= set(re.findall(r"^(?:class|struct) (\w+)", f.read(), re.M))
        private -= declared
        self.assertIn("ZipWriter", private)
        self.assertEqual(sorted(private & names), [])
        for line in out.splitlines():
            self.assertNotIn("::Rep::", line)

    def test_daemon_helper_and_systemd_files_are_installed(self):
        build = os.environ["BUILD_ROOT"]
        dest = self.path("dest")
        run("meson", "install", "-C", build, "--no-rebuild", "--destdir", dest)
        [daemon] = glob.glob(dest + "/**/sbin/torshpkgd", recursive=True)
        self.assertTrue(os.path.isfile(dest + "/sbin/mount.torshpkg"))
        [unit] = glob.glob(dest + "/**/lib/systemd/system/torshpkgd.service", recursive=True)
        self.assertTrue(glob.glob(dest + "/**/lib/systemd/system/torshpkg-mount@.service",
                                  recursive=True))
        self.assertTrue(glob.glob(dest + "/**/lib/tmpfiles.d/torshpkg.conf", recursive=True))
        self.assertTrue(glob.glob(dest + "/**/lib/systemd/catalog/torshpkg.catalog", recursive=True))
        self.assertTrue(glob.glob(dest + "/**/doc/torshpkg/torshpkgd.json.example", recursive=True))
        with open(unit) as f:
            exec_start = [line for line in f if line.startswith("ExecStart=")][0]
        # The unit names the installed daemon (its path without the staging folder).
        self.assertIn(daemon[len(dest):] + " --config", exec_start)

    def test_the_python_module_is_installed_into_debians_python(self):
        build = os.environ["BUILD_ROOT"]
        if not glob.glob(build + "/python/torshpkg/_native*.so"):
            self.skipTest("the Python module is not built")
        dest = self.path("dest")
        run("meson", "install", "-C", build, "--no-rebuild", "--destdir", dest)
        [init] = glob.glob(dest + "/**/dist-packages/torshpkg/__init__.py", recursive=True)
        [native] = glob.glob(dest + "/**/dist-packages/torshpkg/_native*.so", recursive=True)
        self.assertEqual(os.path.dirname(init), os.path.dirname(native))
        site = os.path.dirname(os.path.dirname(init))
        # The folder is one Debian's Python searches once the staging folder is taken away.
        searched = subprocess.run(["/usr/bin/python3", "-c", "import sys; print(sys.path)"],
                                  capture_output=True, text=True, check=True).stdout
        self.assertIn(repr(site[len(dest):]), searched)
        lib = glob.glob(dest + "/**/libtorshpkg.so*", recursive=True)[0]
        self.write("hello.txt", b"hello from Python")
        pkg = self.path("p.torshpkg")
        run(os.environ["TORSHPKG"], "create", pkg, "--name", "p", "--version", "1.0.0", "-q",
            "--add", "hello.txt=" + self.path("hello.txt"))
        script = ("import torshpkg, sys; p = torshpkg.Package(sys.argv[1], allow_unsigned=True); "
                  "print(torshpkg.__file__); print(p.open('resources/hello.txt').read().decode())")
        env = dict(os.environ, PYTHONPATH=site, LD_LIBRARY_PATH=os.path.dirname(lib))
        out = subprocess.run(["/usr/bin/python3", "-c", script, pkg], capture_output=True,
                             text=True, env=env)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout.splitlines(), [init, "hello from Python"])


if __name__ == "__main__":
    unittest.main()
