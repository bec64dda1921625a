import { type MetricsText, type Readiness } from '../../../platform/src/index.js';
import { type Route } from './router.js';
export interface ProbeSources {
    readiness(): Promise<Readiness>;
    metrics(): Promise<MetricsText>;
}
export declare function probeRoutes(sources: ProbeSources): Route[];
