// What the Kubernetes components share: image references pinned by digest, labels, and the
// failure-domain topology key replicas spread over.
import { PINNED_IMAGE } from "../../model/site/model";

/** Kubernetes' label for the zone a node is in: nublar's failure domain on a cluster. */
export const FAILURE_DOMAIN_KEY = "topology.kubernetes.io/zone";

export class ComponentArgsError extends Error {}

/** Refuse an image that is not pinned by digest, naming the argument. */
export function pinnedImage(what: string, image: string): string {
    if (!PINNED_IMAGE.test(image)) {
        throw new ComponentArgsError(`${what}: '${image}' is not pinned by digest; give registry/name@sha256:<digest> (images/README.md says how to get it)`);
    }
    return image;
}

/** The labels every resource of a component carries; the first two select its pods. */
export function labelsFor(app: string, component: string): Record<string, string> {
    return { "app.kubernetes.io/name": app, "app.kubernetes.io/instance": app, "app.kubernetes.io/component": component, "app.kubernetes.io/managed-by": "nublar" };
}

export function selectorFor(app: string): Record<string, string> {
    return { "app.kubernetes.io/name": app, "app.kubernetes.io/instance": app };
}

export interface Resources {
    requests: { cpu: string; memory: string };
    limits: { cpu: string; memory: string };
}
