// The lab cluster's throwaway PKI, made with openssl once per cluster folder and kept across
// restarts (a cluster that comes back keeps its identity, and the host's kubeconfig stays
// valid). EC P-256 keys: fast to make. Files 0600, the folder 0700.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import type { LabKubePlan } from "../../model/kube/plan";
import { LabCommandError } from "../ops";
import { KUBE_CLIENTS, pkiFile } from "./config";

const DAYS = "3650";

function openssl(dir: string, args: string[]): void {
    const r = spawnSync("openssl", args, { cwd: dir, encoding: "utf8" });
    if (r.error) throw new LabCommandError("making the lab cluster's PKI", ["openssl", ...args], r.error.message);
    if (r.status !== 0) throw new LabCommandError("making the lab cluster's PKI", ["openssl", ...args], r.stderr);
}

function key(dir: string, name: string): void {
    openssl(dir, ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", `${name}.key`]);
}

function ca(dir: string, name: string, cn: string): void {
    key(dir, name);
    openssl(dir, ["req", "-x509", "-new", "-key", `${name}.key`, "-sha256", "-days", DAYS, "-subj", `/CN=${cn}`,
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", `${name}.crt`]);
}

/** A certificate signed by `signer` (a CA's file stem), with extensions written to an extfile. */
function issue(dir: string, name: string, signer: string, subject: string, ext: string[]): void {
    key(dir, name);
    openssl(dir, ["req", "-new", "-key", `${name}.key`, "-subj", subject, "-out", `${name}.csr`]);
    fs.writeFileSync(path.join(dir, `${name}.ext`), `${["basicConstraints=critical,CA:FALSE", ...ext].join("\n")}\n`);
    openssl(dir, ["x509", "-req", "-in", `${name}.csr`, "-CA", `${signer}.crt`, "-CAkey", `${signer}.key`, "-CAcreateserial",
        "-days", DAYS, "-sha256", "-extfile", `${name}.ext`, "-out", `${name}.crt`]);
    fs.rmSync(path.join(dir, `${name}.csr`));
    fs.rmSync(path.join(dir, `${name}.ext`));
}

const CLIENT = ["keyUsage=critical,digitalSignature,keyEncipherment", "extendedKeyUsage=clientAuth"];
const SERVER = ["keyUsage=critical,digitalSignature,keyEncipherment", "extendedKeyUsage=serverAuth"];

/** Written last: a PKI without it was interrupted and is made anew. */
export const PKI_DONE = "complete";

/** Make the PKI unless a complete one is there (a half-made one is made anew). */
export function ensurePki(plan: LabKubePlan): void {
    const dir = plan.paths.pki;
    if (fs.existsSync(path.join(dir, PKI_DONE))) return;
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    // openssl writes keys with our umask: make them private from the start.
    const oldMask = process.umask(0o077);
    try {
        ca(dir, "ca", `nublar-lab-ca-${plan.nodeName}`);
        ca(dir, "front-proxy-ca", `nublar-lab-front-proxy-ca-${plan.nodeName}`);
        issue(dir, "apiserver", "ca", "/CN=kube-apiserver", [...SERVER,
            `subjectAltName=${[
                `IP:${plan.nodeAddress}`, "IP:::1", `IP:${plan.apiServiceAddress}`,
                "DNS:kubernetes", "DNS:kubernetes.default", "DNS:kubernetes.default.svc", "DNS:kubernetes.default.svc.cluster.local",
                "DNS:localhost", `DNS:${plan.nodeName}`,
            ].join(",")}`]);
        issue(dir, "kubelet-serving", "ca", `/O=system:nodes/CN=system:node:${plan.nodeName}`, [...SERVER,
            `subjectAltName=IP:${plan.nodeAddress},DNS:${plan.nodeName}`]);
        // The API server's identity towards kubelets (logs, exec, port-forward): an administrator.
        issue(dir, "apiserver-kubelet-client", "ca", "/O=system:masters/CN=kube-apiserver-kubelet-client", CLIENT);
        issue(dir, "front-proxy-client", "front-proxy-ca", "/CN=front-proxy-client", CLIENT);
        for (const [client, id] of Object.entries(KUBE_CLIENTS)) {
            const cn = client === "kubelet" ? `${id.cn}${plan.nodeName}` : id.cn;
            const o = "o" in id ? `/O=${id.o}` : "";
            issue(dir, client, "ca", `${o}/CN=${cn}`, CLIENT);
        }
        key(dir, "sa");
        openssl(dir, ["ec", "-in", "sa.key", "-pubout", "-out", "sa.pub"]);
        for (const f of fs.readdirSync(dir)) fs.chmodSync(path.join(dir, f), 0o600);
        fs.writeFileSync(path.join(dir, PKI_DONE), "");
    } finally {
        process.umask(oldMask);
    }
}

export function readPem(plan: LabKubePlan, name: string): string {
    return fs.readFileSync(pkiFile(plan, name), "utf8");
}
