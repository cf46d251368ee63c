"""government data sources and ingestion batches

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 14:08:52.747949
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ingestion_batches',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('provider', sa.String(length=64), nullable=False),
    sa.Column('file_name', sa.String(length=512), nullable=False),
    sa.Column('file_sha256', sa.String(length=64), nullable=False),
    sa.Column('rows_read', sa.Integer(), nullable=False),
    sa.Column('rows_accepted', sa.Integer(), nullable=False),
    sa.Column('rows_rejected', sa.Integer(), nullable=False),
    sa.Column('rows_already_stored', sa.Integer(), nullable=False),
    sa.Column('quarantine_file', sa.String(length=512), nullable=True),
    sa.Column('operator', sa.String(length=64), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ingestion_batches')),
    sa.UniqueConstraint('source', 'file_sha256', name='uq_ingestion_batches_source_sha')
    )
    op.create_table('src_credit_bureau',
    sa.Column('credit_code', sa.String(length=18), nullable=False),
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('outstanding_loans_cny', sa.Float(precision=53), nullable=False, comment='outstanding loans (CNY)'),
    sa.Column('working_capital_loans_cny', sa.Float(precision=53), nullable=False, comment='outstanding working-capital loans (CNY)'),
    sa.Column('overdue_count_24m', sa.BigInteger(), nullable=False, comment='overdue instances in the last 24 months'),
    sa.Column('lending_banks', sa.BigInteger(), nullable=False, comment='number of lending banks'),
    sa.Column('guarantees_given_cny', sa.Float(precision=53), nullable=False, comment='guarantees given to others (CNY)'),
    sa.Column('consent_ref', sa.String(length=128), nullable=True),
    sa.Column('batch_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['batch_id'], ['ingestion_batches.id'], name=op.f('fk_src_credit_bureau_batch_id_ingestion_batches')),
    sa.PrimaryKeyConstraint('credit_code', 'as_of', name='pk_src_credit_bureau'),
    comment='bank-side credit report; provider pboc_credit_reference (人行征信)'
    )
    op.create_table('src_electricity',
    sa.Column('credit_code', sa.String(length=18), nullable=False),
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('kwh_m01', sa.Float(precision=53), nullable=False, comment='electricity used, month 1 back (kWh)'),
    sa.Column('kwh_m02', sa.Float(precision=53), nullable=False, comment='electricity used, month 2 back (kWh)'),
    sa.Column('kwh_m03', sa.Float(precision=53), nullable=False, comment='electricity used, month 3 back (kWh)'),
    sa.Column('kwh_m04', sa.Float(precision=53), nullable=False, comment='electricity used, month 4 back (kWh)'),
    sa.Column('kwh_m05', sa.Float(precision=53), nullable=False, comment='electricity used, month 5 back (kWh)'),
    sa.Column('kwh_m06', sa.Float(precision=53), nullable=False, comment='electricity used, month 6 back (kWh)'),
    sa.Column('kwh_m07', sa.Float(precision=53), nullable=False, comment='electricity used, month 7 back (kWh)'),
    sa.Column('kwh_m08', sa.Float(precision=53), nullable=False, comment='electricity used, month 8 back (kWh)'),
    sa.Column('kwh_m09', sa.Float(precision=53), nullable=False, comment='electricity used, month 9 back (kWh)'),
    sa.Column('kwh_m10', sa.Float(precision=53), nullable=False, comment='electricity used, month 10 back (kWh)'),
    sa.Column('kwh_m11', sa.Float(precision=53), nullable=False, comment='electricity used, month 11 back (kWh)'),
    sa.Column('kwh_m12', sa.Float(precision=53), nullable=False, comment='electricity used, month 12 back (kWh)'),
    sa.Column('kwh_m13', sa.Float(precision=53), nullable=False, comment='electricity used, month 13 back (kWh)'),
    sa.Column('kwh_m14', sa.Float(precision=53), nullable=False, comment='electricity used, month 14 back (kWh)'),
    sa.Column('kwh_m15', sa.Float(precision=53), nullable=False, comment='electricity used, month 15 back (kWh)'),
    sa.Column('kwh_m16', sa.Float(precision=53), nullable=False, comment='electricity used, month 16 back (kWh)'),
    sa.Column('kwh_m17', sa.Float(precision=53), nullable=False, comment='electricity used, month 17 back (kWh)'),
    sa.Column('kwh_m18', sa.Float(precision=53), nullable=False, comment='electricity used, month 18 back (kWh)'),
    sa.Column('kwh_m19', sa.Float(precision=53), nullable=False, comment='electricity used, month 19 back (kWh)'),
    sa.Column('kwh_m20', sa.Float(precision=53), nullable=False, comment='electricity used, month 20 back (kWh)'),
    sa.Column('kwh_m21', sa.Float(precision=53), nullable=False, comment='electricity used, month 21 back (kWh)'),
    sa.Column('kwh_m22', sa.Float(precision=53), nullable=False, comment='electricity used, month 22 back (kWh)'),
    sa.Column('kwh_m23', sa.Float(precision=53), nullable=False, comment='electricity used, month 23 back (kWh)'),
    sa.Column('kwh_m24', sa.Float(precision=53), nullable=False, comment='electricity used, month 24 back (kWh)'),
    sa.Column('consent_ref', sa.String(length=128), nullable=True),
    sa.Column('batch_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['batch_id'], ['ingestion_batches.id'], name=op.f('fk_src_electricity_batch_id_ingestion_batches')),
    sa.PrimaryKeyConstraint('credit_code', 'as_of', name='pk_src_electricity'),
    comment='monthly electricity consumption; provider state_grid (电力公司)'
    )
    op.create_table('src_financials',
    sa.Column('credit_code', sa.String(length=18), nullable=False),
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('total_assets_cny', sa.Float(precision=53), nullable=False, comment='total assets (CNY)'),
    sa.Column('total_liabilities_cny', sa.Float(precision=53), nullable=False, comment='total liabilities (CNY)'),
    sa.Column('current_assets_cny', sa.Float(precision=53), nullable=False, comment='current assets (CNY)'),
    sa.Column('current_liabilities_cny', sa.Float(precision=53), nullable=False, comment='current liabilities (CNY)'),
    sa.Column('revenue_cny', sa.Float(precision=53), nullable=False, comment='operating revenue (CNY)'),
    sa.Column('cost_of_sales_cny', sa.Float(precision=53), nullable=False, comment='cost of sales (CNY)'),
    sa.Column('net_profit_cny', sa.Float(precision=53), nullable=False, comment='net profit (CNY)'),
    sa.Column('receivables_cny', sa.Float(precision=53), nullable=False, comment='accounts receivable (CNY)'),
    sa.Column('inventory_cny', sa.Float(precision=53), nullable=False, comment='inventory (CNY)'),
    sa.Column('payables_cny', sa.Float(precision=53), nullable=False, comment='accounts payable (CNY)'),
    sa.Column('interest_expense_cny', sa.Float(precision=53), nullable=False, comment='interest expense (CNY)'),
    sa.Column('own_funds_cny', sa.Float(precision=53), nullable=False, comment='own working capital (自有营运资金) (CNY)'),
    sa.Column('other_wc_sources_cny', sa.Float(precision=53), nullable=False, comment='other working-capital sources (CNY)'),
    sa.Column('consent_ref', sa.String(length=128), nullable=True),
    sa.Column('batch_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['batch_id'], ['ingestion_batches.id'], name=op.f('fk_src_financials_batch_id_ingestion_batches')),
    sa.PrimaryKeyConstraint('credit_code', 'as_of', name='pk_src_financials'),
    comment='filed financial statements, latest year; provider filed_statements (财务报表)'
    )
    op.create_table('src_judicial',
    sa.Column('credit_code', sa.String(length=18), nullable=False),
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('dishonest_debtor', sa.Boolean(), nullable=False, comment='on the dishonest-debtor list (失信被执行人)'),
    sa.Column('enforcement_cases', sa.BigInteger(), nullable=False, comment='open enforcement cases (被执行案件)'),
    sa.Column('litigation_count', sa.BigInteger(), nullable=False, comment='lawsuits as defendant, last 3 years'),
    sa.Column('consent_ref', sa.String(length=128), nullable=True),
    sa.Column('batch_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['batch_id'], ['ingestion_batches.id'], name=op.f('fk_src_judicial_batch_id_ingestion_batches')),
    sa.PrimaryKeyConstraint('credit_code', 'as_of', name='pk_src_judicial'),
    comment='court records; provider courts (法院)'
    )
    op.create_table('src_loan_outcomes',
    sa.Column('credit_code', sa.String(length=18), nullable=False),
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('loan_id', sa.String(length=256), nullable=False, comment='loan identifier'),
    sa.Column('amount_cny', sa.Float(precision=53), nullable=False, comment='loan amount (CNY)'),
    sa.Column('default_12m', sa.Boolean(), nullable=False, comment='90+ days past due or written off within 12 months of as_of'),
    sa.Column('consent_ref', sa.String(length=128), nullable=True),
    sa.Column('batch_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['batch_id'], ['ingestion_batches.id'], name=op.f('fk_src_loan_outcomes_batch_id_ingestion_batches')),
    sa.PrimaryKeyConstraint('credit_code', 'as_of', name='pk_src_loan_outcomes'),
    comment='loans and their 12-month outcomes (training); provider bank_loan_book (银行信贷台账)'
    )
    op.create_table('src_locality',
    sa.Column('credit_code', sa.String(length=18), nullable=False),
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('chamber_member', sa.Boolean(), nullable=False, comment='member of an out-of-town chamber of commerce (异地温州商会)'),
    sa.Column('years_in_locality', sa.Float(precision=53), nullable=False, comment='years the entrepreneur has operated in the locality'),
    sa.Column('children_in_local_school', sa.BigInteger(), nullable=False, comment="entrepreneur's children in local schools"),
    sa.Column('local_property', sa.Boolean(), nullable=False, comment='entrepreneur owns local property'),
    sa.Column('social_contribution_score', sa.Float(precision=53), nullable=False, comment='charity, employment and honours, 0-100'),
    sa.Column('consent_ref', sa.String(length=128), nullable=True),
    sa.Column('batch_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['batch_id'], ['ingestion_batches.id'], name=op.f('fk_src_locality_batch_id_ingestion_batches')),
    sa.PrimaryKeyConstraint('credit_code', 'as_of', name='pk_src_locality'),
    comment='new-villager locality facts; provider chambers_schools_property (商会/教育/不动产)'
    )
    op.create_table('src_per_mu',
    sa.Column('credit_code', sa.String(length=18), nullable=False),
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('land_area_mu', sa.Float(precision=53), nullable=False, comment='land used (mu)'),
    sa.Column('tax_paid_cny', sa.Float(precision=53), nullable=False, comment='total tax paid, latest year (CNY)'),
    sa.Column('value_added_cny', sa.Float(precision=53), nullable=False, comment='industrial value added, latest year (CNY)'),
    sa.Column('energy_use_tce', sa.Float(precision=53), nullable=False, comment='energy use (tce)'),
    sa.Column('emissions_t', sa.Float(precision=53), nullable=False, comment='major pollutant emissions (tonnes equivalent)'),
    sa.Column('employees', sa.BigInteger(), nullable=False, comment='average employees'),
    sa.Column('rd_expense_cny', sa.Float(precision=53), nullable=False, comment='R&D expense, latest year (CNY)'),
    sa.Column('revenue_cny', sa.Float(precision=53), nullable=False, comment='main business revenue, latest year (CNY)'),
    sa.Column('per_mu_class', sa.String(length=32), nullable=True, comment='official per-mu class'),
    sa.Column('above_scale', sa.Boolean(), nullable=False, comment='above-designated-size industrial enterprise (规上企业)'),
    sa.Column('consent_ref', sa.String(length=128), nullable=True),
    sa.Column('batch_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['batch_id'], ['ingestion_batches.id'], name=op.f('fk_src_per_mu_batch_id_ingestion_batches')),
    sa.PrimaryKeyConstraint('credit_code', 'as_of', name='pk_src_per_mu'),
    comment='per-mu efficiency evaluation (亩均效益综合评价); provider economy_it_bureau (经信局)'
    )
    op.create_table('src_registry',
    sa.Column('credit_code', sa.String(length=18), nullable=False),
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False, comment='registered name'),
    sa.Column('legal_form', sa.String(length=32), nullable=False, comment='legal form'),
    sa.Column('established_date', sa.Date(), nullable=False, comment='date of establishment'),
    sa.Column('registered_capital_cny', sa.Float(precision=53), nullable=False, comment='registered capital (CNY)'),
    sa.Column('industry_code', sa.String(length=256), nullable=False, comment='industry, GB/T 4754-2017 section letter + division digits'),
    sa.Column('district', sa.String(length=256), nullable=False, comment='county-level district (pinyin)'),
    sa.Column('size_class', sa.String(length=32), nullable=False, comment='enterprise size class'),
    sa.Column('abnormal_operation', sa.Boolean(), nullable=False, comment='on the abnormal-operation list (经营异常名录)'),
    sa.Column('admin_penalties_3y', sa.BigInteger(), nullable=False, comment='administrative penalties in the last 3 years'),
    sa.Column('consent_ref', sa.String(length=128), nullable=True),
    sa.Column('batch_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['batch_id'], ['ingestion_batches.id'], name=op.f('fk_src_registry_batch_id_ingestion_batches')),
    sa.PrimaryKeyConstraint('credit_code', 'as_of', name='pk_src_registry'),
    comment='business registration; provider market_regulation (市场监管局)'
    )
    op.create_table('src_social_security',
    sa.Column('credit_code', sa.String(length=18), nullable=False),
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('insured_employees_m01', sa.BigInteger(), nullable=False, comment='insured employees, month 1 back'),
    sa.Column('insured_employees_m02', sa.BigInteger(), nullable=False, comment='insured employees, month 2 back'),
    sa.Column('insured_employees_m03', sa.BigInteger(), nullable=False, comment='insured employees, month 3 back'),
    sa.Column('insured_employees_m04', sa.BigInteger(), nullable=False, comment='insured employees, month 4 back'),
    sa.Column('insured_employees_m05', sa.BigInteger(), nullable=False, comment='insured employees, month 5 back'),
    sa.Column('insured_employees_m06', sa.BigInteger(), nullable=False, comment='insured employees, month 6 back'),
    sa.Column('insured_employees_m07', sa.BigInteger(), nullable=False, comment='insured employees, month 7 back'),
    sa.Column('insured_employees_m08', sa.BigInteger(), nullable=False, comment='insured employees, month 8 back'),
    sa.Column('insured_employees_m09', sa.BigInteger(), nullable=False, comment='insured employees, month 9 back'),
    sa.Column('insured_employees_m10', sa.BigInteger(), nullable=False, comment='insured employees, month 10 back'),
    sa.Column('insured_employees_m11', sa.BigInteger(), nullable=False, comment='insured employees, month 11 back'),
    sa.Column('insured_employees_m12', sa.BigInteger(), nullable=False, comment='insured employees, month 12 back'),
    sa.Column('wage_arrears', sa.Boolean(), nullable=False, comment='wage arrears on record (欠薪)'),
    sa.Column('consent_ref', sa.String(length=128), nullable=True),
    sa.Column('batch_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['batch_id'], ['ingestion_batches.id'], name=op.f('fk_src_social_security_batch_id_ingestion_batches')),
    sa.PrimaryKeyConstraint('credit_code', 'as_of', name='pk_src_social_security'),
    comment='social insurance; provider human_resources_bureau (人社局)'
    )
    op.create_table('src_tax',
    sa.Column('credit_code', sa.String(length=18), nullable=False),
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('tax_credit_grade', sa.String(length=32), nullable=False, comment='national tax-credit grade (纳税信用等级)'),
    sa.Column('tax_credit_score', sa.Float(precision=53), nullable=False, comment='tax-credit score, 0-100'),
    sa.Column('taxable_sales_cny_y0', sa.Float(precision=53), nullable=False, comment='taxable sales (应税销售收入), latest year (CNY)'),
    sa.Column('taxable_sales_cny_y1', sa.Float(precision=53), nullable=False, comment='taxable sales (应税销售收入), one year earlier (CNY)'),
    sa.Column('taxable_sales_cny_y2', sa.Float(precision=53), nullable=False, comment='taxable sales (应税销售收入), two years earlier (CNY)'),
    sa.Column('vat_paid_cny_y0', sa.Float(precision=53), nullable=False, comment='VAT paid, latest year (CNY)'),
    sa.Column('vat_paid_cny_y1', sa.Float(precision=53), nullable=False, comment='VAT paid, one year earlier (CNY)'),
    sa.Column('vat_paid_cny_y2', sa.Float(precision=53), nullable=False, comment='VAT paid, two years earlier (CNY)'),
    sa.Column('corporate_income_tax_cny', sa.Float(precision=53), nullable=False, comment='corporate income tax paid, latest year (CNY)'),
    sa.Column('rd_super_deduction_cny', sa.Float(precision=53), nullable=False, comment='R&D super-deduction claimed (研发费用加计扣除), latest year (CNY)'),
    sa.Column('tax_arrears', sa.Boolean(), nullable=False, comment='has overdue tax (欠税)'),
    sa.Column('consent_ref', sa.String(length=128), nullable=True),
    sa.Column('batch_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['batch_id'], ['ingestion_batches.id'], name=op.f('fk_src_tax_batch_id_ingestion_batches')),
    sa.PrimaryKeyConstraint('credit_code', 'as_of', name='pk_src_tax'),
    comment='tax-credit rating and tax figures; provider tax_bureau (税务局)'
    )
    op.create_table('src_tech',
    sa.Column('credit_code', sa.String(length=18), nullable=False),
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('high_tech_enterprise', sa.Boolean(), nullable=False, comment='national high-tech enterprise certificate (高新技术企业)'),
    sa.Column('tech_sme', sa.Boolean(), nullable=False, comment='registered technology SME (科技型中小企业)'),
    sa.Column('specialized_level', sa.String(length=32), nullable=False, comment='专精特新 level'),
    sa.Column('invention_patents', sa.BigInteger(), nullable=False, comment='granted invention patents'),
    sa.Column('utility_models', sa.BigInteger(), nullable=False, comment='utility-model patents'),
    sa.Column('software_copyrights', sa.BigInteger(), nullable=False, comment='software copyrights'),
    sa.Column('rd_staff', sa.BigInteger(), nullable=False, comment='R&D staff'),
    sa.Column('high_level_talent', sa.BigInteger(), nullable=False, comment='high-level talent (高层次人才)'),
    sa.Column('rd_platform_level', sa.String(length=32), nullable=False, comment='R&D platform level (研发平台)'),
    sa.Column('university_cooperation', sa.Boolean(), nullable=False, comment='industry-university-research cooperation (产学研合作)'),
    sa.Column('tech_awards', sa.BigInteger(), nullable=False, comment='science and technology awards'),
    sa.Column('equity_funding_cny', sa.Float(precision=53), nullable=False, comment='equity funding raised in the last 3 years (CNY)'),
    sa.Column('consent_ref', sa.String(length=128), nullable=True),
    sa.Column('batch_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['batch_id'], ['ingestion_batches.id'], name=op.f('fk_src_tech_batch_id_ingestion_batches')),
    sa.PrimaryKeyConstraint('credit_code', 'as_of', name='pk_src_tech'),
    comment='technology qualifications and IP; provider science_tech_bureau (科技局)'
    )
    op.create_table('src_two_healthy',
    sa.Column('credit_code', sa.String(length=18), nullable=False),
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('enterprise_points', sa.Float(precision=53), nullable=False, comment='points for healthy development of the enterprise, 0-600'),
    sa.Column('entrepreneur_points', sa.Float(precision=53), nullable=False, comment='points for healthy growth of the entrepreneur, 0-400'),
    sa.Column('total_points', sa.Float(precision=53), nullable=False, comment='total points, 0-1000'),
    sa.Column('grade', sa.String(length=32), nullable=False, comment='official grade'),
    sa.Column('whitelisted', sa.Boolean(), nullable=False, comment='on the two-healthy whitelist (白名单)'),
    sa.Column('consent_ref', sa.String(length=128), nullable=True),
    sa.Column('batch_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['batch_id'], ['ingestion_batches.id'], name=op.f('fk_src_two_healthy_batch_id_ingestion_batches')),
    sa.PrimaryKeyConstraint('credit_code', 'as_of', name='pk_src_two_healthy'),
    comment="'two healthy' points (两个健康积分); provider two_healthy_office (两个健康办)"
    )


def downgrade() -> None:
    op.drop_table('src_two_healthy')
    op.drop_table('src_tech')
    op.drop_table('src_tax')
    op.drop_table('src_social_security')
    op.drop_table('src_registry')
    op.drop_table('src_per_mu')
    op.drop_table('src_locality')
    op.drop_table('src_loan_outcomes')
    op.drop_table('src_judicial')
    op.drop_table('src_financials')
    op.drop_table('src_electricity')
    op.drop_table('src_credit_bureau')
    op.drop_table('ingestion_batches')
