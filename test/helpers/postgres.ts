/** The throwaway PostgreSQL cluster the store tests run against: the same one the bench starts. */
export { startPostgres, type ThrowawayPostgres as TestPostgres } from '../../scripts/postgres.js';
