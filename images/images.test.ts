// The images' files, checked statically: this machine reaches no registry and no CentOS
// mirror, so they are not built here (images/README.md). The yum repos go through the policy
// pack's own check; the Containerfiles must pin their base, drop root where the app allows,
// and carry a health check.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { yumRepoProblems } from "../policy/rules/lamp";

const HERE = __dirname;
const read = (...p: string[]) => fs.readFileSync(path.join(HERE, ...p), "utf8");

/** Containerfile instructions, continuation lines joined, comments dropped. */
function instructions(file: string): { op: string; args: string }[] {
    return read(file).replace(/\\\n/g, " ").split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"))
        .map((l) => ({ op: l.split(/\s+/)[0].toUpperCase(), args: l.slice(l.split(/\s+/)[0].length).trim() }));
}

test("centos7-lamp: only the vault repos, each enabled one checking signatures with the CentOS 7 key", () => {
    const repo = read("centos7-lamp", "rootfs", "etc", "yum.repos.d", "centos7-vault.repo");
    assert.deepEqual(yumRepoProblems("centos7-vault.repo", repo), []);
    assert.ok(!/mirrorlist|metalink/.test(repo), "no dead mirror lists");
    assert.equal((repo.match(/^baseurl=https:\/\/vault\.centos\.org\/7\.9\.2009\//gm) ?? []).length, 3);
    assert.equal((repo.match(/^gpgkey=file:\/\/\/etc\/pki\/rpm-gpg\/RPM-GPG-KEY-CentOS-7$/gm) ?? []).length, 3);
    // The check itself is not a rubber stamp: the same file with one repo's check off fails.
    assert.equal(yumRepoProblems("x.repo", repo.replace("gpgcheck=1", "gpgcheck=0")).length, 1);
    const steps = instructions("centos7-lamp/Containerfile");
    // Every other repo file is removed before the vault's is added.
    assert.ok(steps.findIndex((s) => s.op === "RUN" && s.args.includes("rm -f /etc/yum.repos.d/*.repo")) < steps.findIndex((s) => s.op === "COPY" && s.args.includes("centos7-vault.repo")));
});

test("both Containerfiles: a base given by digest at build time, a health check; the LAMP app runs without root", () => {
    for (const image of ["centos7-lamp", "nublar-agent"]) {
        const steps = instructions(`${image}/Containerfile`);
        const arg = steps.findIndex((s) => s.op === "ARG" && s.args === "BASE");
        const from = steps.findIndex((s) => s.op === "FROM");
        assert.ok(arg >= 0 && arg < from && steps[from].args === "${BASE}", `${image}: FROM \${BASE}, with no default`);
        assert.equal(steps.filter((s) => s.op === "HEALTHCHECK").length, 1, image);
        for (const copy of steps.filter((s) => s.op === "COPY")) {
            const src = copy.args.split(/\s+/)[0];
            const root = image === "nublar-agent" ? path.join(HERE, "..") : path.join(HERE, image);
            assert.ok(fs.existsSync(path.join(root, src)), `${image}: COPY ${src} exists`);
        }
        assert.ok(fs.readFileSync(path.join(HERE, image, "README.md"), "utf8").includes("## End-of-life risks"), image);
    }
    const lamp = instructions("centos7-lamp/Containerfile");
    assert.equal(lamp.filter((s) => s.op === "USER").pop()?.args, "48", "Apache's user, not root");
    assert.ok(lamp.some((s) => s.op === "RUN" && s.args.includes("Listen [::]:8080")), "an unprivileged port, IPv6");
    // Liveness (?live) must not depend on the data volume; readiness does.
    const health = read("centos7-lamp", "rootfs", "var", "www", "html", "health.php");
    assert.match(health, /\$ok = isset\(\$_GET\['live'\]\) \|\| is_writable\('\/var\/www\/data'\);/);
});

test("lab-lamp: the stand-in has centos7-lamp's layout, port, user and pages, from the same files", () => {
    const config = JSON.parse(read("lab-lamp", "image.json"));
    assert.equal(config.User, "48", "Apache's user, as on CentOS");
    assert.deepEqual(Object.keys(config.ExposedPorts), ["8080/tcp"]);
    assert.match(read("lab-lamp", "rootfs", "etc", "apache2", "apache2.conf"), /^Listen \[::\]:8080$/m);
    const customize = read("lab-lamp", "customize");
    // The same health page, app page and Apache directives, copied from centos7-lamp's tree at build time.
    for (const f of ["etc/httpd/conf.d/nublar.conf", "var/www/html/health.php", "var/www/html/index.php"]) {
        assert.ok(customize.includes(`$centos/${f}`), `lab-lamp copies ${f} from centos7-lamp`);
    }
    assert.match(read("lab-lamp", "README.md"), /stand-in/i);
    // The page runs on CentOS 7's PHP 5.4 too: none of PHP 7's syntax.
    const code = read("centos7-lamp", "rootfs", "var", "www", "html", "index.php").split("\n").filter((l) => !/^\s*(\/\/|#|\*)/.test(l)).join("\n");
    assert.ok(!code.includes("??"), "no null-coalescing operator (PHP 7)");
    assert.ok(instructions("centos7-lamp/Containerfile").some((s) => s.op === "COPY" && s.args.includes("index.php")), "the CentOS image has the same page");
});
