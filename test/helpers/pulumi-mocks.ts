// Waiting for a component built under Pulumi mocks: every resource below it registered, with
// no fixed sleep. A transformation on the component sees each child as it is constructed;
// a child's URN resolves once its registration is done. Repeat until no new child appears
// (children created inside an apply come later).
import * as pulumi from "@pulumi/pulumi";

export async function settled<T>(make: (opts: pulumi.ComponentResourceOptions) => T): Promise<{ value: T; resources: pulumi.Resource[] }> {
    const resources: pulumi.Resource[] = [];
    const value = make({ transformations: [(args) => { resources.push(args.resource); return undefined; }] });
    let seen = -1;
    while (seen !== resources.length) {
        seen = resources.length;
        await Promise.all(resources.map((r) => new Promise((resolve) => r.urn.apply(resolve))));
    }
    return { value, resources };
}
