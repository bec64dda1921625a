// The agent reads time only through an injected clock (platform/src/clock.ts);
// re-exported here so agent modules have one import for it.
export { DAY, HOUR, MINUTE, SECOND, systemClock, type CancelTimer, type Clock, type MonotonicClock, type TimerClock } from '../../platform/src/index.js'
