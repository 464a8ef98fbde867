// A small seeded PRNG for the project's fuzz tests (model/site/fuzz.ts, test/events): the same
// seed gives the same cases on every machine, so a failure can be replayed. (node-bfd, a package
// of its own, keeps its own copy in packages/node-bfd/src/testing/sim.ts.)

/** mulberry32: uniform in [0, 1). */
export function prng(seed: number): () => number {
    let a = seed >>> 0;
    return () => {
        a = (a + 0x6d2b79f5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}
