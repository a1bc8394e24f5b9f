/** What other domains and the services may use of the trading domain. */
export { contractIdProblem, createAccounts, findUser, type NewAccount, resetAccountCredit } from './accounts.repository.ts'
export { exactAmountText } from './money.ts'
export { projectUser, rebuildUserProjections } from './user-projection.ts'
